/** Prints rows as an aligned table with a header, for people; scripts use --json. */
export function printTable(headers: string[], rows: string[][], out: NodeJS.WritableStream = process.stdout): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  out.write(`${line(headers)}\n`);
  for (const row of rows) out.write(`${line(row)}\n`);
}

/** Progress for long operations, on stderr so stdout stays clean for --json. */
export function progress(line: string): void {
  process.stderr.write(`• ${line}\n`);
}
