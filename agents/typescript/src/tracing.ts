// Traces of this agent's runs, when it is given an OTLP endpoint (--otlp-endpoint, or OpenTelemetry's
// own OTEL_EXPORTER_OTLP_* variables): each run it accepts is a span, a child of the server's
// assignment span that JobAssignment.traceparent names, so a job's one trace runs from the REST
// request that created it to the command's end. Off by default: then nothing here is created.
import { defaultTextMapGetter, ROOT_CONTEXT, SpanStatusCode } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { JobOutcome, type JobAssignment } from '../generated/agent/v1/agent.js';
import type { RunResult } from './job-runner.js';

export interface TracingOptions {
  /** Where spans go: an OTLP/HTTP traces URL (…/v1/traces). */
  endpoint: string;
  serviceName: string;
}

export interface RunTracer {
  /** A span for a run from its acceptance; the function returned ends it with the run's result. */
  startRun(assignment: JobAssignment): (result: RunResult) => void;
  /** Sends the spans still buffered, waiting at most `waitMs`. */
  shutdown(waitMs: number): Promise<void>;
}

export function startRunTracer(options: TracingOptions, agent: { agentId: string; version: string }): RunTracer {
  const resource = new Resource({ 'service.name': options.serviceName, 'service.instance.id': agent.agentId, 'service.version': agent.version });
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: options.endpoint }))] });
  const tracer = provider.getTracer('agent-jobs-agent', agent.version);
  const propagator = new W3CTraceContextPropagator();
  return {
    startRun(assignment) {
      // A malformed or empty traceparent extracts to nothing: the run then starts a trace of its own.
      const parent = propagator.extract(ROOT_CONTEXT, { traceparent: assignment.traceparent, tracestate: assignment.tracestate }, defaultTextMapGetter);
      const span = tracer.startSpan(
        'run job',
        { attributes: { 'job.id': assignment.jobId, 'job.attempt': assignment.attempt, 'agent.id': agent.agentId, 'repository.name': assignment.repository?.name ?? '' } },
        parent,
      );
      return (result) => {
        if (result.givenBack !== undefined) span.setAttribute('job.given_back', result.givenBack);
        else span.setAttribute('job.outcome', JobOutcome[result.outcome] ?? String(result.outcome));
        if (result.exitCode !== undefined) span.setAttribute('process.exit_code', result.exitCode);
        if (result.outcome === JobOutcome.JOB_OUTCOME_FAILED) span.setStatus({ code: SpanStatusCode.ERROR, message: result.failureReason });
        span.end();
      };
    },
    async shutdown(waitMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
      await Promise.race([provider.shutdown().catch(() => undefined), late]);
      clearTimeout(timer);
    },
  };
}
