/** Splits a byte stream into JSON lines; tolerant of chunks that cut lines anywhere. */
export async function* readJsonLines(body: AsyncIterable<Uint8Array>, maxLineBytes = 1 << 20): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  let pending = '';
  for await (const chunk of body) {
    pending += decoder.decode(chunk, { stream: true });
    if (pending.length > maxLineBytes && !pending.includes('\n')) {
      throw new Error(`event stream line longer than ${maxLineBytes} bytes`);
    }
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line.length === 0) continue;
      yield JSON.parse(line) as unknown;
    }
  }
  const rest = (pending + decoder.decode()).trim();
  if (rest.length > 0) yield JSON.parse(rest) as unknown;
}
