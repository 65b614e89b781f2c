// Reading from an agent's stream only when the session wants more. grpc-js hands a call's messages
// to a Node Readable that asks for the next one whenever it holds fewer than 16, whether or not
// it is paused: pausing the call stops 'data' events, not reading, so a paused stream still takes
// in everything its agent has in flight (a patch window, a log backlog) and holds it in memory.
// The gate stops it where it starts: grpc-js reads a message only when the session, having taken
// in the one before, grants the next. A session that pauses grants nothing until it resumes, so
// grpc-js leaves the HTTP/2 stream paused meanwhile, and HTTP/2 flow control holds the agent's
// writes: what a paused stream holds is the message that made it pause and the flow-control window.
import { ServerInterceptingCall, type Metadata, type ServerInterceptingCallInterface, type ServerInterceptor } from '@grpc/grpc-js';

export class ReadGate {
  /** Whether the next read may go at once (at most one: the session asks for messages one by one). */
  private credit = true;
  private waitingRead: (() => void) | undefined;

  /** The session has taken in a message and wants the next: the read that waits goes now, or the next one will. */
  grant(): void {
    const read = this.waitingRead;
    this.waitingRead = undefined;
    if (read) read();
    else this.credit = true;
  }

  /** Runs `read` now if the session asked for a message, or once it does (grpc-js asks for one read at a time; a repeat replaces it). */
  request(read: () => void): void {
    if (!this.credit) {
      this.waitingRead = read;
      return;
    }
    this.credit = false;
    read();
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

/**
 * Gives every call that streams requests a ReadGate (Server option `interceptors`); its handler
 * must grant reads (readGateOf), as AgentSession does. Calls with one request message (unary, server
 * streaming: the health service) are left as they are: grpc-js reads their message and half-close
 * by itself, and nothing would grant it.
 */
export const readGateInterceptor: ServerInterceptor = (method, call) => (method.requestStream ? new GatedCall(call, new ReadGate()) : new ServerInterceptingCall(call));

/** The gate of the call whose handler got `metadata`; undefined on a server without readGateInterceptor. */
export function readGateOf(metadata: Metadata): ReadGate | undefined {
  return gates.get(metadata);
}
