// The `streamJobLogs` WebSocket of openapi.yaml. A browser cannot read the status of a refused
// upgrade, so every failure after the handshake is a close code with a reason (errors.ts maps codes);
// a plain GET without an upgrade is a 426 problem. Checks run in the REST order: token, then input,
// then membership and the job.
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { LogStreamCloseCode, websocketOperations, type StreamJobLogsParams, type StreamJobLogsQuery } from '../../../generated/openapi/frames.js';
import { AppError, InvalidArgumentError } from '../../errors.js';
import type { UserAuthenticator } from '../../services/auth/user-authenticator.js';
import { lowerCaseIds } from '../ids.js';
import { validationFieldErrors } from '../problem.js';
import { parameterSchemas, type OpenApiDocument } from '../specification.js';
import { compileParameters } from '../validation.js';
import type { LogFanout } from './log-fanout.js';
import { fitCloseReason } from './viewer.js';

const operation = websocketOperations.streamJobLogs;

export async function registerLogStream(app: FastifyInstance, deps: { specification: OpenApiDocument; userAuth: UserAuthenticator; fanout: LogFanout }): Promise<void> {
  const schemas = parameterSchemas(deps.specification, operation.path, operation.method.toLowerCase());
  const validParams = compileParameters<StreamJobLogsParams>(schemas.params);
  const validQuery = compileParameters<StreamJobLogsQuery>(schemas.query);

  // Before the plugin's own preClose (which closes sockets without a code): viewers hear 1001.
  app.addHook('preClose', async () => deps.fanout.stop());
  await app.register(websocket, {
    options: {
      // Frames are small JSON already; compression would cost CPU per viewer and hide the real buffer size.
      perMessageDeflate: false,
      // Viewers send nothing the server reads.
      maxPayload: 4 * 1024,
      handleProtocols: (offered: Set<string>) => (offered.has(operation.subprotocol) ? operation.subprotocol : false),
    },
    errorHandler: (err: Error, socket: WebSocket, request: FastifyRequest) => {
      // A client that breaks the protocol (a frame over maxPayload, invalid UTF-8, an unknown opcode)
      // has already been sent ws's close (1009, 1007, 1002) and the socket ends with it: its fault, not
      // ours, so no error-level line with a stack that any signed-in client could repeat at will.
      if (isProtocolViolation(err)) {
        request.log.info({ code: err.code, reason: err.message }, 'log stream viewer broke the WebSocket protocol');
        return;
      }
      request.log.error({ err }, 'log stream socket failed');
      socket.terminate();
    },
  });

  const checked = (request: FastifyRequest): { params: StreamJobLogsParams; query: StreamJobLogsQuery } => {
    const params = lowerCaseIds({ ...(request.params as object) });
    const query = { ...(request.query as object) };
    if (!validParams(params)) throw new InvalidArgumentError('Invalid path parameters', validationFieldErrors('/params', validParams.errors ?? []));
    if (!validQuery(query)) throw new InvalidArgumentError('Invalid query parameters', validationFieldErrors('/query', validQuery.errors ?? []));
    return { params, query };
  };

  app.route({
    method: 'GET',
    url: operation.path.replace(/\{(\w+)\}/g, ':$1'),
    schema: { hide: true },
    handler: async () => {
      throw new AppError('upgrade_required', 'This is a WebSocket endpoint; connect with a WebSocket client');
    },
    wsHandler: async (socket: WebSocket, request: FastifyRequest) => {
      try {
        if (socket.protocol !== operation.subprotocol) throw new InvalidArgumentError(`Offer the ${operation.subprotocol} subprotocol`);
        const caller = await deps.userAuth.authenticate(authorization(request));
        const { params, query } = checked(request);
        await deps.fanout.follow(socket, caller, params.orgId, params.jobId, query.after);
      } catch (err) {
        if (socket.readyState !== socket.OPEN) return;
        if (err instanceof AppError && err.statusCode < 500) return socket.close(err.closeCode, closeReason(err));
        request.log.error({ err }, 'log stream failed');
        socket.close(LogStreamCloseCode.InternalError, 'internal error; reconnect with after');
      }
    },
  });
}

/** ws's errors for a peer's protocol violations all carry a `WS_ERR_…` code. */
function isProtocolViolation(err: Error): err is Error & { code: string } {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('WS_ERR_');
}

/** The bearer token of a `bearer.<token>` subprotocol (what browsers can send), else the header. */
function authorization(request: FastifyRequest): string | undefined {
  const offered = String(request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  const token = offered.find((p) => p.startsWith(operation.tokenSubprotocolPrefix))?.slice(operation.tokenSubprotocolPrefix.length);
  return token ? `Bearer ${token}` : request.headers.authorization;
}

/** The message, or the first field it complains about, as a close reason can hold little. */
function closeReason(err: AppError): string {
  const field = err.fieldErrors[0];
  return fitCloseReason(field ? `${field.pointer} ${field.message}` : err.message);
}
