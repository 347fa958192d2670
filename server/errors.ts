/**
 * The one place errors become HTTP responses: a FhirError keeps its status and
 * OperationOutcome; body-parser failures become the 4xx they mean; anything else is a 500
 * that says nothing internal (the detail goes to the log, tied to the request id).
 */
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { OAuthError } from '../auth/errors.js';
import { TokenRequired } from '../auth/resource-server.js';
import { FhirError, outcome, toFhirError } from '../fhir/index.js';
import type { Logger } from './logger.js';

interface BodyParserError {
  type?: string;
  status?: number;
  statusCode?: number;
}

export function httpError(err: unknown): FhirError {
  if (err instanceof OAuthError) {
    return new FhirError(err.status, outcome(err.status === 401 ? 'login' : err.status === 403 ? 'forbidden' : 'invalid', err.description));
  }
  const parserError = err as BodyParserError;
  switch (parserError?.type) {
    case 'entity.parse.failed':
      return new FhirError(400, outcome('invalid', 'The request body is not valid JSON'));
    case 'entity.too.large':
      return new FhirError(413, outcome('too-costly', 'The request body is larger than this server accepts'));
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new FhirError(415, outcome('not-supported', 'Unsupported body encoding or charset'));
    case 'request.aborted':
      return new FhirError(400, outcome('incomplete', 'The request was aborted'));
    case 'request.size.invalid':
    case 'stream.encoding.set':
    case 'stream.not.readable':
      return new FhirError(400, outcome('invalid', 'The request body could not be read'));
  }
  if (err instanceof URIError) {
    return new FhirError(400, outcome('invalid', 'The request URL is not valid'));
  }
  const status = parserError?.status ?? parserError?.statusCode;
  if (!(err instanceof FhirError) && typeof status === 'number' && status >= 400 && status < 500) {
    return new FhirError(status, outcome('invalid', 'The request could not be processed'));
  }
  return toFhirError(err);
}

export function sendOutcome(res: Parameters<RequestHandler>[1], error: FhirError): void {
  res.status(error.status).type('application/fhir+json').send(JSON.stringify(error.outcome));
}

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const error = httpError(err);
    if (error.status >= 500) {
      logger.error({ err, requestId: res.locals.requestId }, 'request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof TokenRequired) {
      res.setHeader(
        'WWW-Authenticate',
        err.invalid ? `Bearer realm="CareThread", error="invalid_token", error_description="${err.description.replace(/"/g, "'")}"` : 'Bearer realm="CareThread"'
      );
    }
    sendOutcome(res, error);
  };
}

export const notFoundHandler: RequestHandler = (req, res) => {
  sendOutcome(res, new FhirError(404, outcome('not-found', `No endpoint at ${req.method} ${req.path}`)));
};

/**
 * Requests Node's HTTP parser refuses before any route sees them (headers over 16 KiB, a
 * malformed request line or header, a bad Content-Length) get an OperationOutcome too, not
 * Node's bodiless default answer.
 */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason, text] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'The request headers are larger than this server accepts']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', 'The request was not received in time']
          : [400, 'Bad Request', 'The request is not valid HTTP'];
    // The authorization server answers in OAuth errors: tell by the request line, if it got that far.
    const requestLine = (err as { rawPacket?: Buffer }).rawPacket?.subarray(0, 64).toString('latin1') ?? '';
    const oauth = /^[A-Z]+ \/auth\//.test(requestLine);
    const body = oauth
      ? JSON.stringify({ error: 'invalid_request', error_description: text })
      : JSON.stringify(outcome(status === 408 ? 'timeout' : status === 431 ? 'too-costly' : 'invalid', text));
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${oauth ? 'application/json' : 'application/fhir+json'}; charset=utf-8\r\n` +
        `Content-Security-Policy: default-src 'none'\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
    );
  });
}
