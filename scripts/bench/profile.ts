/**
 * Optional CPU profiling of the server thread (BENCH_CPU_PROFILE=1): a V8 profile per
 * measured scenario, saved as `.bench/<engine>-<scenario>.cpuprofile` (open it in Chrome
 * DevTools) and summarized as the functions and packages with the most self time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  file: string;
  /** Share of sampled time per function (self time), largest first. */
  topFunctions: { name: string; share: number }[];
  /** Share of sampled time per package or project folder. */
  byArea: { area: string; share: number }[];
}

export class ServerProfiler {
  private constructor(private readonly session: Session) {}

  static async open(): Promise<ServerProfiler> {
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 500 });
    return new ServerProfiler(session);
  }

  async start(): Promise<void> {
    await this.session.post('Profiler.start');
  }

  async stop(file: string): Promise<ProfileSummary> {
    const { profile } = (await this.session.post('Profiler.stop')) as unknown as { profile: Profile };
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(profile));
    return summarize(profile, file);
  }

  close(): void {
    this.session.disconnect();
  }
}

function summarize(profile: Profile, file: string): ProfileSummary {
  const hits = new Map<number, number>();
  for (const sample of profile.samples ?? []) {
    hits.set(sample, (hits.get(sample) ?? 0) + 1);
  }
  const total = [...hits.values()].reduce((a, b) => a + b, 0) || 1;
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const node of profile.nodes) {
    const count = hits.get(node.id) ?? 0;
    if (!count) {
      continue;
    }
    const { functionName, url, lineNumber } = node.callFrame;
    const area = areaOf(url, functionName);
    const name = `${functionName || '(anonymous)'} ${url ? `${shorten(url)}:${lineNumber + 1}` : ''}`.trim();
    byFunction.set(name, (byFunction.get(name) ?? 0) + count);
    byArea.set(area, (byArea.get(area) ?? 0) + count);
  }
  const top = (map: Map<string, number>, n: number) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([key, count]) => [key, count / total] as const);
  return {
    file,
    topFunctions: top(byFunction, 15).map(([name, share]) => ({ name, share })),
    byArea: top(byArea, 12).map(([area, share]) => ({ area, share })),
  };
}

function shorten(url: string): string {
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    return url.slice(modules + 'node_modules/'.length);
  }
  return url.replace(/^file:\/\/.*?\/(server|fhir|auth|scripts)\//, '$1/');
}

/** The package (`@medplum/core`, `express`) or project folder (`fhir/search`) a frame is in. */
function areaOf(url: string, functionName: string): string {
  if (!url) {
    return functionName.startsWith('(') ? functionName : '(native)';
  }
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const parts = url.slice(modules + 'node_modules/'.length).split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  if (url.startsWith('node:')) {
    return `node:${url.slice(5).split('/')[0]}`;
  }
  const project = /\/(server|fhir|auth|scripts)\/([^/]+)\//.exec(url);
  return project ? `${project[1]}/${project[2]}` : shorten(url);
}
