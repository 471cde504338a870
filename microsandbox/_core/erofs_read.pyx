"""Read an uncompressed EROFS image back into the writer's ``Node`` tree (metadata only).

Used to rebuild fsmeta from cached layer images without their tars. Every offset, size and count
read from the image is checked against the file before use; inodes are read once each (hard links
come back as one shared ``Node``); a directory cycle or a hostile image is ``InvalidLayerError``.
"""
import os
import stat
import struct
from collections import deque

from microsandbox._core.erofs cimport Node, node_is_dir
from microsandbox._core.erofs import crc32c
from microsandbox._core.erofs_fs cimport *
from microsandbox.errors import InvalidLayerError

from microsandbox._core.erofs_structs import (COMPACT_INODE as _COMPACT, DIRENT as _DIRENT,
                                              EXTENDED_INODE as _EXTENDED, SUPERBLOCK as _SUPER,
                                              XATTR_ENTRY as _XATTR_ENTRY, XATTR_PREFIXES as _PREFIXES)
MAX_INODES = 8_000_000


def _bad(path, why):
    return InvalidLayerError(f"{path}: not a usable EROFS layer image: {why}", path=str(path))


DEF CHUNK = 1 << 17   # metadata is read in aligned chunks of this size, not one pread per field
DEF MAX_CHUNKS = 64


cdef class _Image:
    cdef int fd
    cdef object path, size, meta_base, build_time, build_nsec
    cdef dict inline_at   # nid -> byte where the inode's inline data (or chunk table) starts
    cdef dict chunks      # chunk index -> its bytes (inodes and dirents cluster in a few chunks)

    def __init__(self, int fd, path):
        self.fd, self.path, self.inline_at, self.chunks = fd, path, {}, {}
        self.size = os.fstat(fd).st_size
        if self.size < EROFS_BLKSZ or self.size % EROFS_BLKSZ:
            raise _bad(path, f"its size {self.size} is not a positive multiple of {EROFS_BLKSZ}")

    cdef bytes read(self, off, n):
        if off < 0 or n < 0 or off + n > self.size:
            raise _bad(self.path, f"a structure at byte {off} (+{n}) lies outside the image")
        first, last = off // CHUNK, (off + n - 1) // CHUNK if n else off // CHUNK
        if first != last:
            data = os.pread(self.fd, n, off)
        else:
            chunk = self.chunks.get(first)
            if chunk is None:
                if len(self.chunks) >= MAX_CHUNKS:   # bounded memory; reads move forward mostly
                    self.chunks.clear()
                chunk = self.chunks[first] = os.pread(self.fd, min(CHUNK, self.size - first * CHUNK),
                                                      first * CHUNK)
            data = chunk[off - first * CHUNK:off - first * CHUNK + n]
        if len(data) != n:
            raise _bad(self.path, f"short read at byte {off}")
        return data


def read_image(path):
    """(root Node, blocks in the image) for the EROFS image at ``path``.

    Regular files come back with ``blkaddr`` (FLAT_PLAIN, relative to this image) or
    ``chunk_bits``/``chunks`` (CHUNK_BASED block map); whiteouts as char 0:0 nodes.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        img = _Image(fd, path)
        sb = _SUPER.unpack(img.read(EROFS_SUPER_OFFSET, _SUPER.size))
        magic, checksum, compat, blkszbits, _, root_nid, _, build_time, build_nsec, _, meta_blkaddr = sb[:11]
        if magic != EROFS_SUPER_MAGIC or blkszbits != EROFS_BLKSZ_BITS:
            raise _bad(path, "bad superblock magic or block size")
        if compat & EROFS_COMPAT_SB_CHKSUM:
            block = bytearray(img.read(EROFS_SUPER_OFFSET, EROFS_BLKSZ - EROFS_SUPER_OFFSET))
            block[4:8] = bytes(4)
            if crc32c(block) != checksum:
                raise _bad(path, "the superblock checksum does not match (the kernel would refuse it)")
        incompat = sb[14]
        if incompat & ~EROFS_INCOMPAT_CHUNKED_FILE:
            raise _bad(path, f"unsupported features 0x{incompat:x} (compressed or multi-device images)")
        img.meta_base = meta_blkaddr * EROFS_BLKSZ
        img.build_time, img.build_nsec = build_time, build_nsec
        return _read_tree(img, root_nid), img.size // EROFS_BLKSZ
    finally:
        os.close(fd)


cdef object _read_tree(_Image img, root_nid):
    nodes = {}
    cdef Node root = _read_inode(img, root_nid, nodes), node, child
    if not node_is_dir(root):
        raise _bad(img.path, "the root inode is not a directory")
    queue = deque([(root_nid, root)])
    seen_dirs = {root_nid}
    while queue:
        nid, node = queue.popleft()
        for name, child_nid in _read_dir(img, node, nid):
            child = _read_inode(img, child_nid, nodes)
            if node_is_dir(child):
                if child_nid in seen_dirs:
                    raise _bad(img.path, f"directory nid {child_nid} is reachable twice (a cycle or a hard-linked dir)")
                seen_dirs.add(child_nid)
                queue.append((child_nid, child))
            node.children[name] = child
    return root


cdef Node _read_inode(_Image img, nid, dict nodes):
    if nid in nodes:
        return nodes[nid]
    if len(nodes) >= MAX_INODES:
        raise _bad(img.path, "too many inodes")
    at = img.meta_base + nid * EROFS_SLOT
    head = img.read(at, 2)
    fmt = struct.unpack("<H", head)[0]
    layout = (fmt >> 1) & 0x7
    if fmt & 1:
        f = _EXTENDED.unpack(img.read(at, _EXTENDED.size))
        _, icount, mode, _, size, i_u, _, uid, gid, mtime, nsec, nlink = f
        core = EROFS_INODE_EXTENDED
    else:
        f = _COMPACT.unpack(img.read(at, _COMPACT.size))
        _, icount, mode, nlink, size, _, i_u, _, uid, gid, _ = f
        mtime, nsec = img.build_time, img.build_nsec   # compact inodes carry the image's time
        core = EROFS_INODE_COMPACT
    if fmt >> 4 or layout not in (EROFS_FLAT_PLAIN, EROFS_FLAT_INLINE, EROFS_CHUNK_BASED):
        raise _bad(img.path, f"inode {nid} has an unsupported format 0x{fmt:x}")
    cdef Node node = Node(mode, uid, gid, mtime, nsec)
    ibody_size = 12 + 4 * (icount - 1) if icount else 0
    node.xattrs = _read_xattrs(img, at + core, ibody_size) if icount else {}
    data_at = at + core + ibody_size
    node.size = size
    node.layout, node.i_u = layout, i_u
    img.inline_at[nid] = data_at
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFREG:
        if layout == EROFS_FLAT_INLINE:
            raise _bad(img.path, f"file inode {nid} has an inline tail; layer images must keep whole blocks")
        if layout == EROFS_CHUNK_BASED:
            if i_u & EROFS_CHUNK_FORMAT_INDEXES or i_u & ~0x1F:
                raise _bad(img.path, f"file inode {nid} uses chunk indexes, which layer images never do")
            node.chunk_bits = i_u & 0x1F
            chunk = EROFS_BLKSZ << node.chunk_bits
            count = (size + chunk - 1) // chunk
            table = img.read(_round4(data_at), 4 * count)
            node.chunks = list(struct.unpack(f"<{count}I", table))
        else:
            node.blkaddr = i_u
            if size and i_u * EROFS_BLKSZ + size > img.size:
                raise _bad(img.path, f"file inode {nid}'s data lies outside the image")
    elif kind == stat.S_IFLNK:
        node.target = _read_data(img, node, nid)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        node.rdev_major = (i_u >> 8) & 0xFFF
        node.rdev_minor = (i_u & 0xFF) | ((i_u >> 12) & 0xFFF00)
    elif kind not in (stat.S_IFDIR, stat.S_IFIFO, stat.S_IFSOCK):
        raise _bad(img.path, f"inode {nid} has a bogus mode 0o{mode:o}")
    nodes[nid] = node
    return node


cdef object _round4(n):
    return (n + 3) // 4 * 4


cdef dict _read_xattrs(_Image img, at, size):
    if size < EROFS_XATTR_HEADER:
        raise _bad(img.path, "an xattr area smaller than its header")
    body = img.read(at, size)
    if body[4]:
        raise _bad(img.path, "shared xattrs, which our layer images never use")
    out, pos = {}, EROFS_XATTR_HEADER
    while pos < size:
        if pos + 4 > size:
            raise _bad(img.path, "a truncated xattr entry")
        name_len, index, value_len = _XATTR_ENTRY.unpack_from(body, pos)
        end = pos + 4 + name_len + value_len
        if index not in _PREFIXES or end > size:
            raise _bad(img.path, "an xattr entry with an unknown prefix or past its area")
        name = _PREFIXES[index] + body[pos + 4:pos + 4 + name_len]
        out[name] = body[pos + 4 + name_len:end]
        pos = _round4(end)
    return out


cdef bytes _read_data(_Image img, Node node, nid):
    """The whole data of a directory or symlink (FLAT_PLAIN blocks, or blocks + inline tail)."""
    size = node.size
    if size > 1 << 30:
        raise _bad(img.path, f"inode {nid} claims {size} bytes of directory or link data")
    if node.layout == EROFS_FLAT_PLAIN:
        return img.read(node.i_u * EROFS_BLKSZ, size)
    if node.layout != EROFS_FLAT_INLINE:
        raise _bad(img.path, f"inode {nid}: a chunk-based directory or symlink")
    full = size // EROFS_BLKSZ * EROFS_BLKSZ
    head = img.read(node.i_u * EROFS_BLKSZ, full) if full else b""
    tail_at = img.inline_at[nid]
    if tail_at // EROFS_BLKSZ != (tail_at + size - full - 1) // EROFS_BLKSZ:
        raise _bad(img.path, f"inode {nid}'s inline data crosses a block boundary")
    return head + img.read(tail_at, size - full)


cdef list _read_dir(_Image img, Node node, nid):
    data = _read_data(img, node, nid)
    entries = []
    for start in range(0, len(data), EROFS_BLKSZ):
        block = data[start:start + EROFS_BLKSZ]
        if len(block) < EROFS_DIRENT_SIZE:
            raise _bad(img.path, f"directory {nid} has a truncated block")
        first_off = _DIRENT.unpack_from(block, 0)[1]
        count = first_off // EROFS_DIRENT_SIZE
        if first_off % EROFS_DIRENT_SIZE or not 0 < first_off < len(block):
            raise _bad(img.path, f"directory {nid} has a bad entry table")
        for i in range(count):
            child_nid, nameoff, _ = _DIRENT.unpack_from(block, i * EROFS_DIRENT_SIZE)
            end = _DIRENT.unpack_from(block, (i + 1) * EROFS_DIRENT_SIZE)[1] if i + 1 < count else len(block)
            if not first_off <= nameoff < end <= len(block):
                raise _bad(img.path, f"directory {nid} has a bad name offset")
            name = block[nameoff:end]
            if i + 1 == count:
                name = name.split(b"\0", 1)[0]
            if name in (b".", b".."):
                continue
            if not name or b"/" in name or len(name) > EROFS_NAME_MAX:
                raise _bad(img.path, f"directory {nid} holds an invalid name {name[:40]!r}")
            entries.append((name, child_nid))
    return entries
