// The agent's side of the lease rule (agent.proto): runs are the agent's only while the server keeps
// answering. Each answer (Welcome to a Hello, HeartbeatAck to a Heartbeat) renews the lease from the
// moment the agent *sent* what it answers, on this process's monotonic clock, so neither network
// delay nor the two machines' clocks can stretch it past what the server counts.
import { performance } from 'node:perf_hooks';

export class AgentLease {
  private expiresAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly onExpired: (leaseMs: number) => void) {}

  /** Now, on the clock the lease counts with. */
  static now(): number {
    return performance.now();
  }

  /** The server answered what was sent at `sentAt`: the lease runs until sentAt + leaseMs (never shortened). */
  renew(sentAt: number, leaseMs: number): void {
    const until = sentAt + leaseMs;
    if (this.expiresAt !== undefined && until <= this.expiresAt) return;
    this.expiresAt = until;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(leaseMs), Math.max(0, until - AgentLease.now()));
    this.timer.unref();
  }

  /** Whether the runs are still the agent's (true with no lease: a server from before leases). */
  get valid(): boolean {
    return this.expiresAt === undefined || AgentLease.now() < this.expiresAt;
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private check(leaseMs: number): void {
    if (this.expiresAt === undefined) return;
    const left = this.expiresAt - AgentLease.now();
    // Timers may fire a little early: wait out the rest rather than stop runs before time.
    if (left > 0) {
      this.timer = setTimeout(() => this.check(leaseMs), left);
      this.timer.unref();
      return;
    }
    this.onExpired(leaseMs);
  }
}
