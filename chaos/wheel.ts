import { crc32 } from 'node:zlib';

/**
 * A minimal valid wheel for `project` `version`, built in memory (a zip of
 * stored members: the package, METADATA, WHEEL and RECORD), so the chaos
 * writer can upload hundreds a second without Python. `tag` makes it a
 * platform wheel (`py3-none-win_amd64`): the same contents, not pure.
 */
export function buildWheel(project: string, version: string, payload: Buffer, tag = 'py3-none-any'): { filename: string; bytes: Buffer } {
  const dist = project.replace(/[-.]+/g, '_');
  const info = `${dist}-${version}.dist-info`;
  const members: [string, Buffer][] = [
    [`${dist}/__init__.py`, Buffer.from(`VERSION = '${version}'\nPAYLOAD = '${payload.toString('hex')}'\n`)],
    [
      `${info}/METADATA`,
      Buffer.from(`Metadata-Version: 2.1\nName: ${project}\nVersion: ${version}\nSummary: written by the chaos suite\n\n`),
    ],
    [`${info}/WHEEL`, Buffer.from(`Wheel-Version: 1.0\nGenerator: banyan-chaos\nRoot-Is-Purelib: ${tag.endsWith('-any')}\nTag: ${tag}\n`)],
  ];
  members.push([`${info}/RECORD`, Buffer.from(`${members.map(([name]) => `${name},,`).join('\n')}\n${info}/RECORD,,\n`)]);
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of members) {
    const nameBytes = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE(20, 4);
    entry.writeUInt16LE(20, 6);
    entry.writeUInt32LE(crc, 16);
    entry.writeUInt32LE(data.length, 20);
    entry.writeUInt32LE(data.length, 24);
    entry.writeUInt16LE(nameBytes.length, 28);
    entry.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    central.push(entry, nameBytes);
    offset += local.length + nameBytes.length + data.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return { filename: `${dist}-${version}-${tag}.whl`, bytes: Buffer.concat([...locals, directory, end]) };
}
