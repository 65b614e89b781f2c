// buildApp: the HTTP API as a Fastify instance. Routes, request validation, response serialisation
// and security all come from openapi.yaml through fastify-openapi-glue; this file only wires the
// typed handlers in and renders failures as problem details.
import { Readable } from 'node:stream';
import fastifySwagger, { type FastifyStaticSwaggerOptions } from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { Client } from '@temporalio/client';
import type { Socket } from 'node:net';
import Fastify, { type ConnectionError, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import openapiGlue from 'fastify-openapi-glue';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { operationIds, operationRoutes, type ApiHandlers, type OperationId } from '../../generated/openapi/handlers.js';
import type { Config } from '../config.js';
import { AppError, InvalidArgumentError, UnauthenticatedError, UnavailableError } from '../errors.js';
import type { DatabaseHandle } from '../db/client.js';
import type { Services } from '../services/index.js';
import { requestContext, type RequestContext } from './context.js';
import { agentHandlers } from './handlers/agents.handlers.js';
import { healthHandlers } from './handlers/health.handlers.js';
import { jobHandlers } from './handlers/jobs.handlers.js';
import { logHandlers } from './handlers/logs.handlers.js';
import { repositoryHandlers } from './handlers/repositories.handlers.js';
import { refusingAgentTokens } from './agent-token-guard.js';
import { lowerCaseIds } from './ids.js';
import { registerJsonBodyParser } from './json-body.js';
import { registerMetrics } from './metrics.js';
import { registerTracing } from './tracing.js';
import { build, clientErrorResponse, renderProblem, type ProblemHints } from './problem.js';
import { LogFanout } from './log-stream/log-fanout.js';
import { registerLogStream } from './log-stream/log-stream.route.js';
import { registerLogViewer } from './log-viewer/log-viewer.plugin.js';
import { loadHttpSpecification, loadSpecification, requestBodyRules, securedOperationIds } from './specification.js';
import { validatorCompiler } from './validation.js';

/** openapi.yaml as @fastify/swagger types it (our loader types only the parts the server reads). */
type SwaggerDocument = Extract<FastifyStaticSwaggerOptions['specification'], { document: object }>['document'];

export interface AppDeps {
  config: Config;
  services: Services;
  database: DatabaseHandle;
  temporal: Client;
  logger: Logger;
  /** The process's metrics, served at /metrics. */
  metrics: Registry;
}

export function createHandlers(deps: AppDeps): ApiHandlers<RequestContext> {
  return {
    ...healthHandlers({
      database: () => deps.database.ping(),
      temporal: async () => {
        await deps.temporal.connection.workflowService.getSystemInfo({});
      },
      pendingMigrations: () => deps.database.pendingMigrations(),
    }),
    ...repositoryHandlers(deps.services),
    ...jobHandlers(deps.services),
    ...logHandlers(deps.services),
    ...agentHandlers(deps.services),
  };
}

/** Adapts one typed handler to Fastify: validated request in, declared status, headers and body out. */
function route<Op extends OperationId>(handlers: ApiHandlers<RequestContext>, operationId: Op) {
  const handler = handlers[operationId] as (input: unknown, ctx: RequestContext) => Promise<{ status: number; headers?: Record<string, string>; body?: unknown }>;
  const mediaTypes: Readonly<Record<number, string | null>> = operationRoutes[operationId].responses;
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const params = lowerCaseIds(request.params as Record<string, unknown>);
    const result = await handler({ params, query: request.query, headers: request.headers, body: request.body }, requestContext(request));
    reply.code(result.status);
    if (result.headers) reply.headers(result.headers);
    const mediaType = mediaTypes[result.status];
    if (mediaType) reply.type(mediaType);
    return reply.send(isAsyncIterable(result.body) ? Readable.from(result.body) : result.body);
  };
}

/** A Fastify route URL (`/v1/orgs/:orgId/jobs`, `/docs/*`) as a regular expression over request paths. */
function routePattern(url: string): RegExp {
  const source = url
    .split(/(:[A-Za-z0-9_]+|\*)/)
    .map((part) => (part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`);
}

function isAsyncIterable(body: unknown): body is AsyncIterable<unknown> {
  return typeof body === 'object' && body !== null && Symbol.asyncIterator in body;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, services, logger } = deps;
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    // Fastify's own answers are plain JSON; these go through the one problem renderer instead.
    return503OnClosing: false,
    frameworkErrors: (err, request, reply) => sendProblem(err, request, reply),
    clientErrorHandler: (err: ConnectionError, socket: Socket) => {
      // As Fastify's default: a reset connection has nobody to answer; anything else hears why.
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      if (socket.writable) socket.write(clientErrorResponse(err));
      socket.destroy(err);
    },
  });
  const sendProblem = (err: unknown, request: FastifyRequest, reply: FastifyReply, hints: ProblemHints = {}) => {
    const { problem, headers, unexpected } = renderProblem(err, request.url, hints);
    if (unexpected) request.log.error({ err }, 'request failed');
    return reply.code(problem.status).headers(headers).type('application/problem+json').send(problem);
  };

  // First of the hooks, so a request's span covers everything the server does for it.
  if (config.tracing) registerTracing(app);

  // A replica that is shutting down finishes what it has and refuses the rest with a problem that
  // says to retry (a keep-alive connection may still bring requests after close began).
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    throw new UnavailableError('This server is shutting down; retry the request');
  });

  // Every route, as Fastify knows it, so that a known path asked with another method is a 405 naming
  // the methods it has, not a 404 (HEAD routes come with GET ones).
  const routes: { pattern: RegExp; methods: string[] }[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    routes.push({ pattern: routePattern(route.url), methods });
  });
  const allowedMethods = (pathname: string) => [...new Set(routes.filter((r) => r.pattern.test(pathname)).flatMap((r) => r.methods))].sort();
  app.setValidatorCompiler(validatorCompiler);
  // fastify-openapi-glue wants a parser for every media type the document names, responses included
  // (it warns at start-up otherwise). No operation takes a problem as input: the preValidation hook
  // below answers such a body with 415, like any media type an operation does not declare.
  registerJsonBodyParser(app, ['application/json', 'application/problem+json']);

  const specification = loadHttpSpecification();
  const bodyRules = requestBodyRules(specification);
  const operationIdOf = (request: FastifyRequest) => (request.routeOptions.schema as { operationId?: string } | undefined)?.operationId ?? '';

  app.setErrorHandler((err, request, reply) => {
    // Fastify parses a body before it runs the not-found handler, so a request with no route can fail on
    // its body first (QUERY without a Content-Type); that there is no route is the answer that matters.
    if (request.is404 && !(err instanceof AppError)) return noRoute(request, reply);
    return sendProblem(err, request, reply, { acceptedMediaTypes: bodyRules.get(operationIdOf(request))?.mediaTypes, sentMediaType: request.headers['content-type'] });
  });
  const noRoute = (request: FastifyRequest, reply: FastifyReply) => {
    const pathname = request.url.split('?')[0] ?? '/';
    const allowed = allowedMethods(pathname);
    if (allowed.length === 0) return reply.code(404).type('application/problem+json').send(build('not_found', `No route ${request.method} ${pathname}`, request.url));
    return reply
      .code(405)
      .header('allow', allowed.join(', '))
      .type('application/problem+json')
      .send(build('method_not_allowed', `${request.method} is not allowed on ${pathname}; it takes ${allowed.join(', ')}`, request.url));
  };
  app.setNotFoundHandler(noRoute);

  const metrics = registerMetrics(app, deps.metrics);

  const secured = securedOperationIds(specification);
  const userAuth = refusingAgentTokens(services.userAuth);
  // Authentication runs first, so a caller without a valid token learns nothing from validation
  // errors; membership and role are checked by the services, which know the organisation.
  app.addHook('onRequest', async (request) => {
    if (secured.has(operationIdOf(request))) request.caller = await userAuth.authenticate(request.headers.authorization);
  });
  // Fastify checks a body only against the schema of its own media type, so a body of another type
  // that it can still parse (text/plain), or no body at all, would reach the handler unvalidated.
  app.addHook('preValidation', async (request) => {
    const rule = bodyRules.get(operationIdOf(request));
    if (!rule) return;
    if (request.body === undefined) {
      if (rule.required) throw new InvalidArgumentError('The request body is required', [{ pointer: '/', message: 'is required' }]);
      return;
    }
    if (!request.mediaType || !rule.mediaTypes.includes(request.mediaType)) {
      throw new AppError('unsupported_media_type', `Content-Type "${request.mediaType ?? ''}" is not supported; send ${rule.mediaTypes.join(' or ')}`);
    }
  });

  // openapi.yaml names text/x-diff (the diff download) and the glue expects a parser for every media
  // type it names; one that keeps the bytes is enough, since preValidation above refuses any body whose
  // type its operation does not take.
  app.addContentTypeParser('text/x-diff', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  const handlers = createHandlers(deps);
  for (const id of operationIds) if (typeof handlers[id] !== 'function') throw new Error(`no handler for ${id}`);
  await app.register(openapiGlue, {
    specification,
    operationResolver: (operationId: string) => {
      if (!(operationIds as readonly string[]).includes(operationId)) throw new Error(`openapi.yaml names ${operationId}, which has no handler`);
      return route(handlers, operationId as OperationId);
    },
    securityHandlers: {
      async bearerAuth(request: FastifyRequest) {
        if (!request.caller) throw new UnauthenticatedError();
      },
    },
  });

  const fanout = new LogFanout(
    { logs: services.logs, database: deps.database, log: logger, metrics },
    { ...config.logStream, pageLines: 1000, sweepIntervalMs: 10_000 },
  );
  await fanout.start();
  await registerLogStream(app, { specification: loadSpecification(), userAuth, fanout });
  await registerLogViewer(app);

  // The document already read, not the file: parsing its YAML once more costs a start a few hundred ms.
  await app.register(fastifySwagger, { mode: 'static', specification: { document: loadSpecification<SwaggerDocument>() } });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  return app;
}
