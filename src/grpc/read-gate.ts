// Reading from an agent's stream only when the session wants more. grpc-js hands a call's messages
// to a Node Readable that asks for the next one whenever it holds fewer than 16, whether or not
// it is paused: pausing the call stops 'data' events, not reading, so a paused stream still takes
// in everything its agent has in flight (a patch window, a log backlog) and holds it in memory.
// The gate stops it where it starts: a read asked for while the gate is closed waits for it to
// open, grpc-js leaves the HTTP/2 stream paused meanwhile, and HTTP/2 flow control holds the
// agent's writes. What a closed gate still lets in is the one message already asked for.
import { ServerInterceptingCall, type Metadata, type ServerInterceptingCallInterface, type ServerInterceptor } from '@grpc/grpc-js';

export class ReadGate {
  private closed = false;
  private waitingRead: (() => void) | undefined;

  /** Reads asked for from now on wait until open(). */
  close(): void {
    this.closed = true;
  }

  /** Lets reads through again, the one that waited first. */
  open(): void {
    this.closed = false;
    const read = this.waitingRead;
    this.waitingRead = undefined;
    read?.();
  }

  /** Runs `read` now, or once the gate opens (a later read asked for meanwhile replaces it: grpc-js asks for one at a time). */
  request(read: () => void): void {
    if (this.closed) this.waitingRead = read;
    else read();
  }
}

class GatedCall extends ServerInterceptingCall {
  constructor(
    next: ServerInterceptingCallInterface,
    private readonly gate: ReadGate,
  ) {
    super(next, {
      start: (startNext) =>
        startNext({
          onReceiveMetadata: (metadata, nextMetadata) => {
            gates.set(metadata, gate);
            nextMetadata(metadata);
          },
        }),
    });
  }

  override startRead(): void {
    this.gate.request(() => super.startRead());
  }
}

/** A call's gate, found by the metadata object grpc-js hands its handler (the call object has no other public handle). */
const gates = new WeakMap<Metadata, ReadGate>();

/** Give every call on the server a ReadGate (Server option `interceptors`). */
export const readGateInterceptor: ServerInterceptor = (_method, call) => new GatedCall(call, new ReadGate());

/** The gate of the call whose handler got `metadata`; undefined on a server without readGateInterceptor. */
export function readGateOf(metadata: Metadata): ReadGate | undefined {
  return gates.get(metadata);
}
