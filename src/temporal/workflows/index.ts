// The workflow bundle's entry point: every workflow the worker hosts.
export { jobWorkflow } from './job.workflow.js';
