// Traces: one per job, from the REST request that created it through its workflow (Temporal's
// OpenTelemetry interceptors), the gateway's assignment and the agent's run. Off unless an OTLP
// endpoint is configured; then nothing here is created and @opentelemetry/api hands every caller
// its no-op tracer and propagator, so the spans the code asks for cost next to nothing.
import { context, propagation, ROOT_CONTEXT, trace, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Config } from '../config.js';
import type { JobTraceContext } from '../domain/job.js';

/** What the Temporal worker needs to export the spans its workflows make in their sandbox. */
export interface Tracing {
  processor: SpanProcessor;
  resource: Resource;
  /** Sends what is buffered and unregisters the globals. */
  shutdown(): Promise<void>;
}

/**
 * With an endpoint: registers the process's tracer provider (spans batched to OTLP/HTTP, JSON
 * bodies), the W3C Trace Context propagator and an AsyncLocalStorage context manager. Without
 * one: creates nothing.
 */
export function startTracing(config: Config): Tracing | undefined {
  if (!config.tracing) return undefined;
  const resource = new Resource({ 'service.name': config.tracing.serviceName, 'service.instance.id': config.replicaId });
  const processor = new BatchSpanProcessor(new OTLPTraceExporter({ url: config.tracing.endpoint }));
  const provider = new BasicTracerProvider({ resource, spanProcessors: [processor] });
  const contextManager = new AsyncLocalStorageContextManager();
  provider.register({ contextManager: contextManager.enable(), propagator: new W3CTraceContextPropagator() });
  return {
    processor,
    resource,
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}

/** The server's tracer (the no-op one while tracing is off); asked each time, so it follows the registered provider. */
export function tracer(): Tracer {
  return trace.getTracer('agent-jobs');
}

/** The active span's place in its trace, to keep with a job; null when nothing is being traced. */
export function activeTraceContext(active: Context = context.active()): JobTraceContext | null {
  const carrier: Partial<JobTraceContext> = {};
  propagation.inject(active, carrier);
  if (!carrier.traceparent) return null;
  return carrier.tracestate ? { traceparent: carrier.traceparent, tracestate: carrier.tracestate } : { traceparent: carrier.traceparent };
}

/** The same, of a span that is not (or not yet) the active one. */
export function traceContextOf(span: Span): JobTraceContext | null {
  return activeTraceContext(trace.setSpan(ROOT_CONTEXT, span));
}

/** A context whose parent is the job's stored place in its trace (the root context for a job without one). */
export function jobTraceParent(stored: JobTraceContext | null | undefined): Context {
  return stored ? propagation.extract(ROOT_CONTEXT, stored) : ROOT_CONTEXT;
}
