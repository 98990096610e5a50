import { Writable } from 'node:stream';

/** A stream that keeps what the CLI writes, as a pipe would (not a terminal). */
export class Capture extends Writable {
  text = '';
  isTTY = false;
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}
