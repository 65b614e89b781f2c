// Bytes from a pipe into log lines: split on \n (a \r before it is dropped too), invalid UTF-8
// becomes U+FFFD (StringDecoder also keeps a character cut between two reads whole), and a line
// longer than the cap is cut into pieces so that one runaway line cannot make a message too large.
import { StringDecoder } from 'node:string_decoder';

export const DEFAULT_MAX_LINE_CHARS = 64 * 1024;

export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';

  constructor(private readonly maxLineChars: number = DEFAULT_MAX_LINE_CHARS) {}

  /** The complete lines this chunk finishes; an unfinished last line waits for more. */
  push(chunk: Buffer): string[] {
    const parts = (this.partial + this.decoder.write(chunk)).split('\n');
    this.partial = parts.pop() ?? '';
    const lines = parts.flatMap((part) => this.pieces(stripCarriageReturn(part)));
    while (this.partial.length > this.maxLineChars) {
      const cut = safeCut(this.partial, this.maxLineChars);
      lines.push(this.partial.slice(0, cut));
      this.partial = this.partial.slice(cut);
    }
    return lines;
  }

  /** The output ended: whatever is left is the last line, even without a newline. */
  end(): string[] {
    const rest = this.partial + this.decoder.end();
    this.partial = '';
    return rest.length > 0 ? this.pieces(stripCarriageReturn(rest)) : [];
  }

  private pieces(line: string): string[] {
    if (line.length <= this.maxLineChars) return [line];
    const pieces: string[] = [];
    let rest = line;
    while (rest.length > this.maxLineChars) {
      const cut = safeCut(rest, this.maxLineChars);
      pieces.push(rest.slice(0, cut));
      rest = rest.slice(cut);
    }
    pieces.push(rest);
    return pieces;
  }
}

function stripCarriageReturn(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/** Where to cut near `at` without splitting a surrogate pair (which would make two U+FFFDs). */
function safeCut(text: string, at: number): number {
  const code = text.charCodeAt(at - 1);
  return code >= 0xd800 && code <= 0xdbff ? at - 1 : at;
}
