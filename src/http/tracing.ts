// A server span per HTTP request, registered only when tracing is on: it continues a caller's trace
// (W3C `traceparent`) or starts one, and is the active span while the handler runs, so a job
// created by `POST …/jobs` keeps this request's place as the root of the job's trace.
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { tracer } from '../observability/tracing.js';

export function registerTracing(app: FastifyInstance): void {
  const traced = new WeakMap<FastifyRequest, { span: Span; context: Context }>();
  app.addHook('onRequest', (request, _reply, done) => {
    // A WebSocket's request lasts as long as its stream: a span for it would say nothing useful.
    if (request.headers.upgrade) return done();
    // The route template, never the raw URL, names the span (ids would make every name unique).
    const route = request.routeOptions.url;
    const parent = propagation.extract(ROOT_CONTEXT, request.headers);
    const span = tracer().startSpan(
      route ? `${request.method} ${route}` : request.method,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': request.method, ...(route ? { 'http.route': route } : {}), 'url.path': request.url.split('?')[0] ?? '/' } },
      parent,
    );
    traced.set(request, { span, context: trace.setSpan(parent, span) });
    done();
  });
  // After the body is read and checked, so the handler and the services it calls run in the span
  // (a context entered before the body arrived would not survive the socket's events).
  app.addHook('preHandler', (request, _reply, done) => {
    const entry = traced.get(request);
    if (entry) context.with(entry.context, done);
    else done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const entry = traced.get(request);
    if (entry) {
      entry.span.setAttribute('http.response.status_code', reply.statusCode);
      if (reply.statusCode >= 500) entry.span.setStatus({ code: SpanStatusCode.ERROR });
      entry.span.end();
    }
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    const entry = traced.get(request);
    if (entry) {
      entry.span.setStatus({ code: SpanStatusCode.ERROR, message: 'the client went away' });
      entry.span.end();
    }
    done();
  });
}
