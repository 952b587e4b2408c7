"use strict";
// Read a ZIP archive in the browser, so that each picture in it is uploaded on its own, straight to
// storage, with its own progress and its own verdict. Entries are read only when uploaded (an archive
// of a thousand photos is never unpacked into memory at once). Stored and deflated entries are read
// (deflate through the browser's DecompressionStream); ZIP64, encrypted entries and other
// compression methods are refused with a reason. The server judges every file by its content anyway.
const Unzip = (() => {
  const EOCD = 0x06054b50, CENTRAL = 0x02014b50, LOCAL = 0x04034b50;
  const utf8 = new TextDecoder("utf-8");

  async function view(file, start, end) {
    return new DataView(await file.slice(start, end).arrayBuffer());
  }

  /** The archive's file entries: [{name, size, problem, read()}], ``read`` resolving to a Blob. */
  async function entries(file) {
    const tailStart = Math.max(0, file.size - 65557);
    const tail = await view(file, tailStart, file.size);
    let at = -1;
    for (let i = tail.byteLength - 22; i >= 0; i--) {
      if (tail.getUint32(i, true) === EOCD) { at = i; break; }
    }
    if (at < 0) throw new Error("not a readable ZIP archive");
    const count = tail.getUint16(at + 10, true);
    const size = tail.getUint32(at + 12, true);
    const offset = tail.getUint32(at + 16, true);
    if (count === 0xffff || offset === 0xffffffff) throw new Error("ZIP64 archives are not supported; upload the pictures or a smaller archive");
    const directory = await view(file, offset, offset + size);
    const found = [];
    let p = 0;
    for (let n = 0; n < count; n++) {
      if (p + 46 > directory.byteLength || directory.getUint32(p, true) !== CENTRAL) throw new Error("the archive's directory is damaged");
      const flags = directory.getUint16(p + 8, true);
      const method = directory.getUint16(p + 10, true);
      const packed = directory.getUint32(p + 20, true);
      const unpacked = directory.getUint32(p + 24, true);
      const nameLength = directory.getUint16(p + 28, true);
      const skip = nameLength + directory.getUint16(p + 30, true) + directory.getUint16(p + 32, true);
      const local = directory.getUint32(p + 42, true);
      const name = utf8.decode(new Uint8Array(directory.buffer, directory.byteOffset + p + 46, nameLength));
      p += 46 + skip;
      if (name.endsWith("/") || name.startsWith("__MACOSX/") || name.split("/").pop().startsWith("._")) continue;
      let problem = "";
      if (flags & 1) problem = "the entry is encrypted";
      else if (method !== 0 && method !== 8) problem = `the entry uses compression method ${method}, which the page cannot unpack`;
      found.push({ name, size: unpacked, problem, read: () => read(file, local, packed, method) });
    }
    return found;
  }

  async function read(file, local, packed, method) {
    const header = await view(file, local, local + 30);
    if (header.getUint32(0, true) !== LOCAL) throw new Error("the archive entry is damaged");
    const start = local + 30 + header.getUint16(26, true) + header.getUint16(28, true);
    const data = file.slice(start, start + packed);
    if (method === 0) return data;
    return new Response(data.stream().pipeThrough(new DecompressionStream("deflate-raw"))).blob();
  }

  return { entries };
})();
