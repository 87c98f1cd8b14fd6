/**
 * Text a client chose (a user agent, a path), made safe to put in a message
 * an operator reads: a terminal, a log, the dashboard, a webhook. The result
 * is one line in double quotes: quotes and backslashes are escaped, and so is
 * every character that could end the line, move the cursor, recolour the
 * terminal or reorder what is shown (C0 and C1 controls with ESC among them,
 * DEL, line and paragraph separators, bidirectional overrides and zero-width
 * characters), as `\n`, `\t`, `\xHH` or `\u{HHHH}`. Longer than `max`
 * characters, it is cut and ends in `…` inside the quotes.
 */
export function quoted(text: string, max = 200): string {
  const chars = Array.from(text);
  const shown = chars.length > max ? chars.slice(0, max) : chars;
  let out = '"';
  for (const ch of shown) out += escapeChar(ch);
  return `${out}${chars.length > max ? '…' : ''}"`;
}

const NAMED: Readonly<Record<string, string>> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

// C0, DEL and C1 controls; soft hyphen; zero-width and direction marks; line/paragraph separators;
// bidirectional embeddings, overrides and isolates; lone surrogates; the byte-order mark; interlinear annotations.
// eslint-disable-next-line no-control-regex -- rejects control and invisible characters on purpose
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ud800-\udfff\ufeff\ufff9-\ufffb]/u;

function escapeChar(ch: string): string {
  const named = NAMED[ch];
  if (named !== undefined) return named;
  if (!UNSAFE.test(ch)) return ch;
  const code = ch.codePointAt(0)!;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
}
