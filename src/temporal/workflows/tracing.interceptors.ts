// Temporal's OpenTelemetry workflow interceptors, as a workflow interceptor module: bundled with the
// workflows only when the worker traces (worker.ts; `npm run build` makes a traced bundle beside the
// plain one). The workflow's spans continue the trace its start carried in its headers, and each
// activity it schedules carries its own span's context on; the spans leave the sandbox through the
// `exporter` sink the worker registers.
import { OpenTelemetryInboundInterceptor, OpenTelemetryInternalsInterceptor, OpenTelemetryOutboundInterceptor } from '@temporalio/interceptors-opentelemetry/lib/workflow/index.js';
import type { WorkflowInterceptors } from '@temporalio/workflow';

export const interceptors = (): WorkflowInterceptors => ({
  inbound: [new OpenTelemetryInboundInterceptor()],
  outbound: [new OpenTelemetryOutboundInterceptor()],
  internals: [new OpenTelemetryInternalsInterceptor()],
});
