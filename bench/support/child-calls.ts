// A child process a benchmark calls like a set of async functions: the parent's `call(name, args)`
// runs the child's handler of that name and resolves with its result. Clients run there so that the
// server's memory, measured in the parent, holds only the server's side of their connections, and so
// that they do not share the server's event loop. The logs and changes benchmarks both use it.
import { fork, type ChildProcess } from 'node:child_process';

/** method → [arguments, result]. */
export type CallTable = Record<string, [unknown, unknown]>;

type Request<T extends CallTable> = { [K in keyof T & string]: { id: number; call: K; args: T[K][0] } }[keyof T & string];
type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export type Handlers<T extends CallTable> = { [K in keyof T]: (args: T[K][0]) => Promise<T[K][1]> };

export class ChildCalls<T extends CallTable> {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly name: string,
  ) {
    child.on('message', (reply: Reply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(new Error(reply.error));
    });
    child.once('exit', (code, signal) => {
      this.exited = true;
      for (const waiter of this.pending.values()) waiter.reject(new Error(`${name}: the process exited (${code ?? signal}) before answering`));
      this.pending.clear();
    });
  }

  /** Forks `childPath` (it inherits this process's tsx loader, so it runs from source as this does). */
  static start<T extends CallTable>(childPath: string, name: string): ChildCalls<T> {
    return new ChildCalls<T>(fork(childPath, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }), name);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Calls `call` in the child; rejects after `timeoutMs` (the child's own bounds should be tighter). */
  call<K extends keyof T & string>(call: K, args: T[K][0], timeoutMs: number): Promise<T[K][1]> {
    if (this.exited) return Promise.reject(new Error(`${this.name}: the process has exited`));
    const id = ++this.nextId;
    return new Promise<T[K][1]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${call} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T[K][1]);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, call, args } as Request<T>);
    });
  }

  /** Ends the child, politely then not. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.disconnect();
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/**
 * The child's side: answers each call with its handler, and leaves when the parent goes away (after
 * `onDisconnect`) or after `lifetimeMs` whatever happens.
 */
export function serveCalls<T extends CallTable>(handlers: Handlers<T>, options: { lifetimeMs: number; onDisconnect?: () => void }): void {
  process.on('message', (request: Request<T>) => {
    const handler = handlers[request.call] as (args: unknown) => Promise<unknown>;
    handler(request.args).then(
      (result) => process.send?.({ id: request.id, ok: true, result } satisfies Reply),
      (err: unknown) => process.send?.({ id: request.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies Reply),
    );
  });
  process.on('disconnect', () => {
    options.onDisconnect?.();
    process.exit(0);
  });
  setTimeout(() => process.exit(2), options.lifetimeMs).unref();
}
