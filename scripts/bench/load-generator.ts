/**
 * The orchestrator's handle on the load-generator process: start it, hand it the seeded
 * ids, run a scenario and wait for its figures.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { LoadCommand, LoadResult, RunCommand } from './load-process.js';
import type { LoadData } from './scenarios.js';

type Reply = { type: 'ready' } | { type: 'result'; result: LoadResult } | { type: 'error'; message: string };

export class LoadGenerator {
  private constructor(private readonly child: ChildProcess) {}

  static start(): LoadGenerator {
    // The child is TypeScript too: load it through tsx's hooks like this process.
    const child = fork(new URL('./load-process.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    return new LoadGenerator(child);
  }

  async setData(data: LoadData): Promise<void> {
    await this.ask({ type: 'data', data });
  }

  async run(options: Omit<RunCommand, 'type'>): Promise<LoadResult> {
    const reply = await this.ask({ type: 'run', ...options });
    if (reply.type !== 'result') {
      throw new Error(`load generator: unexpected reply ${reply.type}`);
    }
    return reply.result;
  }

  stop(): void {
    this.child.kill();
  }

  private ask(command: LoadCommand): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`load generator exited (${code})`));
      this.child.once('exit', onExit);
      this.child.once('message', (reply: Reply) => {
        this.child.off('exit', onExit);
        if (reply.type === 'error') {
          reject(new Error(`load generator: ${reply.message}`));
        } else {
          resolve(reply);
        }
      });
      this.child.send(command);
    });
  }
}
