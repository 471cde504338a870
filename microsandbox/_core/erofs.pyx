"""EROFS image writer: a metadata tree in, an uncompressed 4 KiB-block image out.

File data never passes through here: a producer (the tar stream, or the fsmeta composer) asks
``alloc`` for blocks and writes the bytes there itself, so memory holds metadata only. ``finish``
then lays out directory blocks and the metadata area after the data, writes inodes, xattrs and
inline tails, and writes the superblock (with its CRC32C) last.

Layout choices (shared/spec/erofs.md): xattr headers carry the name filter (compat 0x4; kernels
before 6.6 ignore it); block 0 holds only the superblock; regular files are
FLAT_PLAIN (no inline tails, so another image can point at whole blocks) or CHUNK_BASED with a
4-byte block map (sparse files, and fsmeta files whose blocks live in other images); directories
and symlinks are inline where they fit; compact inodes wherever the fields allow, with the most
common mtime chosen as the image's build time. Output is a pure function of the tree.
"""
import bisect
import os
import stat
import struct
from collections import Counter, deque

from libc.stdint cimport uint32_t
from libc.string cimport memcpy
from posix.stat cimport S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK

from microsandbox._core.erofs_fs cimport *

from microsandbox._core.erofs_structs import SUPERBLOCK as _SUPER, XATTR_ENTRY as _XATTR_ENTRY, XATTR_PREFIXES

_ACL_NAMES = {name: index for index, name in XATTR_PREFIXES.items() if name.startswith(b"system.")}
_XATTR_PREFIXES = tuple((name, index) for index, name in XATTR_PREFIXES.items() if name not in _ACL_NAMES)


def xattr_storable(bytes name):
    """True when EROFS can store ``name`` (its prefix has an index, §6.3)."""
    return _xattr_key(name) is not None


cdef tuple _xattr_key(bytes name):
    if name in _ACL_NAMES:
        return (_ACL_NAMES[name], b"")
    for prefix, index in _XATTR_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return (index, name[len(prefix):])
    return None


cdef class Node:
    """One inode. Directories hold ``children`` (name -> Node); a Node reached by several names is
    one inode with hard links. Regular files carry ``blkaddr`` (FLAT_PLAIN, contiguous blocks) or
    ``chunk_bits`` + ``chunks`` (CHUNK_BASED block map; ``EROFS_NULL_ADDR`` entries are holes).
    The fields are declared in ``erofs.pxd``."""

    def __init__(self, unsigned int mode, uid=0, gid=0, mtime=0, unsigned int mtime_nsec=0):
        self.mode, self.uid, self.gid, self.mtime, self.mtime_nsec = mode, uid, gid, mtime, mtime_nsec
        self.size, self.blkaddr, self.chunk_bits, self.chunks = 0, 0, -1, None
        self.rdev_major = self.rdev_minor = 0
        self.target = None
        self.xattrs = {}
        self.children = {} if stat.S_ISDIR(mode) else None

    @property
    def is_dir(self):
        return node_is_dir(self)


cdef unsigned int _CRC_TABLE[256]


cdef void _init_crc() noexcept:
    cdef unsigned int c, i, k
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        _CRC_TABLE[i] = c


_init_crc()


cpdef unsigned int crc32c(const unsigned char[:] data, unsigned int crc=0xFFFFFFFF) noexcept:
    """CRC32C as the kernel's ``crc32c(~0, ...)``: reflected, no final inversion."""
    cdef Py_ssize_t i
    for i in range(data.shape[0]):
        crc = _CRC_TABLE[(crc ^ data[i]) & 0xFF] ^ (crc >> 8)
    return crc


cdef inline uint32_t _rotl(uint32_t x, int r) noexcept:
    return (x << r) | (x >> (32 - r))


cpdef uint32_t xxh32(const unsigned char[:] data, uint32_t seed) noexcept:
    """XXH32, as the kernel's xattr name filter hashes names (spec 6.6)."""
    cdef uint32_t P1 = 0x9E3779B1, P2 = 0x85EBCA77, P3 = 0xC2B2AE3D, P4 = 0x27D4EB2F, P5 = 0x165667B1
    cdef Py_ssize_t n = data.shape[0], i = 0
    cdef uint32_t v1, v2, v3, v4, h, word
    if n >= 16:
        v1, v2, v3, v4 = seed + P1 + P2, seed + P2, seed, seed - P1
        while i + 16 <= n:
            word = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (<uint32_t>data[i + 3] << 24)
            v1 = _rotl(v1 + word * P2, 13) * P1
            word = data[i + 4] | (data[i + 5] << 8) | (data[i + 6] << 16) | (<uint32_t>data[i + 7] << 24)
            v2 = _rotl(v2 + word * P2, 13) * P1
            word = data[i + 8] | (data[i + 9] << 8) | (data[i + 10] << 16) | (<uint32_t>data[i + 11] << 24)
            v3 = _rotl(v3 + word * P2, 13) * P1
            word = data[i + 12] | (data[i + 13] << 8) | (data[i + 14] << 16) | (<uint32_t>data[i + 15] << 24)
            v4 = _rotl(v4 + word * P2, 13) * P1
            i += 16
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
    else:
        h = seed + P5
    h += <uint32_t>n
    while i + 4 <= n:
        word = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (<uint32_t>data[i + 3] << 24)
        h = _rotl(h + word * P3, 17) * P4
        i += 4
    while i < n:
        h = _rotl(h + data[i] * P5, 11) * P1
        i += 1
    h ^= h >> 15
    h *= P2
    h ^= h >> 13
    h *= P3
    h ^= h >> 16
    return h


def xattr_filter_bit(bytes name):
    """The name filter bit of one xattr name (spec 6.6): xxh32 of the suffix after its short
    prefix, seeded with 0x25BBE08F + the prefix index."""
    index, suffix = _xattr_key(name)
    return xxh32(suffix, EROFS_XATTR_FILTER_SEED + index) & 31


cdef inline object _round_up(object n, object unit):
    return (n + unit - 1) // unit * unit


cdef class ErofsWriter:
    """Allocates data blocks while the producer streams, then writes the metadata on ``finish``.

    With ``chunks_after_image``, chunk addresses count from the end of this image rather than its
    start: fsmeta points into the layers stitched after it without knowing its own size first."""
    cdef int fd
    cdef public object next_block
    cdef public Node root
    cdef bint chunks_after_image

    def __init__(self, int fd, Node root=None, *, bint chunks_after_image=False):
        self.fd = fd
        self.next_block = 1          # block 0 is the superblock's
        self.root = root if root is not None else Node(stat.S_IFDIR | 0o755)
        self.chunks_after_image = chunks_after_image

    def alloc(self, nblocks):
        """Reserve ``nblocks`` contiguous data blocks; returns the first block address."""
        start = self.next_block
        self.next_block += nblocks
        if self.next_block >= EROFS_NULL_ADDR:
            raise OverflowError("EROFS block addresses are 32-bit: the image would pass 16 TiB")
        return start

    def finish(self):
        """Write directories, inodes and the superblock; returns the image size in bytes."""
        cdef Node node
        cdef list order
        cdef dict parents
        cdef unsigned long long meta_size
        cdef unsigned int incompat = 0
        order, parents = self._walk()
        build_time = Counter([(node.mtime, node.mtime_nsec) for node in order]).most_common(1)[0][0]
        for node in order:
            node.extended = (node.size > 0xFFFFFFFF or node.uid > 0xFFFF or node.gid > 0xFFFF or
                             node.nlink > 0xFFFF or node.mtime != build_time[0] or
                             node.mtime_nsec != build_time[1])
            node.ibody = _xattr_ibody(node.xattrs) if node.xattrs else b""
            self._plan_data(node)
        meta_blkaddr = self.next_block
        meta_size = _assign_nids(order)
        meta = bytearray(_round_up(meta_size, EROFS_BLKSZ))
        total_blocks = meta_blkaddr + len(meta) // EROFS_BLKSZ
        chunk_base = total_blocks if self.chunks_after_image else 0
        for node in order:
            if node.dir_blocks is not None:
                self._write_dir(node, parents[node])
            elif node.layout == EROFS_CHUNK_BASED:
                node.inline = _chunk_map(node.chunks, chunk_base)
                incompat |= EROFS_INCOMPAT_CHUNKED_FILE
            _pack_inode(node, meta)
        os.pwrite(self.fd, meta, meta_blkaddr * EROFS_BLKSZ)
        self._write_super(order, build_time, meta_blkaddr, total_blocks, incompat)
        os.ftruncate(self.fd, total_blocks * EROFS_BLKSZ)
        return total_blocks * EROFS_BLKSZ

    cdef tuple _walk(self):
        """Breadth-first, names in byte order: every inode once (numbered in that order, with its
        link count), every directory's sorted names and its parent."""
        cdef Node node, child
        cdef list order = [self.root]
        cdef dict parents = {self.root: self.root}
        cdef set files = set()
        cdef unsigned int subdirs
        queue = deque([self.root])
        self.root.ino = 0
        while queue:
            node = queue.popleft()
            names = sorted(node.children)
            subdirs = 0
            for name in names:
                child = node.children[name]
                if node_is_dir(child):
                    subdirs += 1
                    parents[child] = node
                    queue.append(child)
                elif child in files:         # another name of a file seen before: a hard link
                    child.nlink += 1
                    continue
                else:
                    files.add(child)
                    child.nlink = 1
                child.ino = len(order)
                order.append(child)
            node.nlink = 2 + subdirs
            node.dir_blocks = _pack_dir(names)
        return order, parents

    cdef _plan_data(self, Node node):
        """Pick the data layout and reserve blocks for directory and long-symlink data."""
        cdef Py_ssize_t core = EROFS_INODE_EXTENDED if node.extended else EROFS_INODE_COMPACT
        cdef Py_ssize_t tail, nfull
        node.inline = b""
        if node_is_dir(node):
            blocks = node.dir_blocks
            node.size = (len(blocks) - 1) * EROFS_BLKSZ + blocks[-1][0]
            tail = node.size % EROFS_BLKSZ
            if tail and core + len(node.ibody) + tail <= EROFS_BLKSZ:
                node.layout, nfull = EROFS_FLAT_INLINE, len(blocks) - 1
                node.inline = bytes(tail)   # the real tail, same length, once nids are known
            else:
                node.layout, nfull = EROFS_FLAT_PLAIN, len(blocks)
            node.i_u = self.alloc(nfull) if nfull else EROFS_NULL_ADDR
            node.footprint = core + len(node.ibody) + len(node.inline)
            return
        node.dir_blocks = None
        if stat.S_ISLNK(node.mode):
            node.size = len(node.target)
            if core + len(node.ibody) + len(node.target) <= EROFS_BLKSZ:
                node.layout, node.i_u, node.inline = EROFS_FLAT_INLINE, EROFS_NULL_ADDR, node.target
            else:
                node.layout, node.i_u = EROFS_FLAT_PLAIN, self.alloc(1)
                os.pwrite(self.fd, node.target, node.i_u * EROFS_BLKSZ)
        elif stat.S_ISREG(node.mode) and node.chunks is not None:
            node.layout, node.i_u = EROFS_CHUNK_BASED, node.chunk_bits
            node.inline = bytes(4 * len(node.chunks))   # the real map once addresses are final
        elif stat.S_ISREG(node.mode):
            node.layout, node.i_u = EROFS_FLAT_PLAIN, node.blkaddr if node.size else 0
        else:
            node.layout, node.size = EROFS_FLAT_PLAIN, 0
            node.i_u = ((node.rdev_minor & 0xFF) | (node.rdev_major << 8) |
                        ((node.rdev_minor & ~0xFF) << 12)) if stat.S_ISCHR(node.mode) or \
                stat.S_ISBLK(node.mode) else 0
        node.footprint = core + len(node.ibody) + len(node.inline)

    cdef _write_dir(self, Node node, Node parent):
        """Serialise a directory's blocks with real nids; the last goes inline when planned so."""
        cdef list out = []
        cdef Node target
        cdef bytes name
        cdef bytearray buf
        cdef unsigned char *p
        cdef Py_ssize_t i, nameoff, n
        for used, names in node.dir_blocks:
            buf = bytearray(EROFS_BLKSZ)
            p = buf
            nameoff = EROFS_DIRENT_SIZE * len(names)
            for i in range(len(names)):
                name = names[i]
                target = node if name == b"." else parent if name == b".." else node.children[name]
                _put64(p + i * EROFS_DIRENT_SIZE, target.nid)
                _put16(p + i * EROFS_DIRENT_SIZE + 8, nameoff)
                p[i * EROFS_DIRENT_SIZE + 10] = _file_type(target.mode)
                n = len(name)
                memcpy(p + nameoff, <const char *>name, n)
                nameoff += n
            out.append(buf)
        if node.layout == EROFS_FLAT_INLINE:
            node.inline = bytes(out.pop()[:node.size % EROFS_BLKSZ])
        if out:
            os.pwrite(self.fd, b"".join(out), node.i_u * EROFS_BLKSZ)

    cdef _write_super(self, list order, tuple build_time, meta_blkaddr, total_blocks, incompat):
        block0 = bytearray(EROFS_BLKSZ)
        _SUPER.pack_into(block0, EROFS_SUPER_OFFSET, EROFS_SUPER_MAGIC, 0,
                         EROFS_COMPAT_SB_CHKSUM | EROFS_COMPAT_MTIME | EROFS_COMPAT_XATTR_FILTER,
                         EROFS_BLKSZ_BITS, 0,
                         self.root.nid, len(order), build_time[0], build_time[1], total_blocks,
                         meta_blkaddr, 0, bytes(16), bytes(16), incompat, 0, 0, 0)
        crc = crc32c(memoryview(block0)[EROFS_SUPER_OFFSET:])
        struct.pack_into("<I", block0, EROFS_SUPER_OFFSET + 4, crc)
        os.pwrite(self.fd, block0, 0)


cdef unsigned char _FILE_TYPES[16]      # dirent file type by the mode's S_IFMT >> 12
for _kind, _ft in ((S_IFREG, EROFS_FT_REG_FILE), (S_IFDIR, EROFS_FT_DIR), (S_IFLNK, EROFS_FT_SYMLINK),
                   (S_IFCHR, EROFS_FT_CHRDEV), (S_IFBLK, EROFS_FT_BLKDEV), (S_IFIFO, EROFS_FT_FIFO),
                   (S_IFSOCK, EROFS_FT_SOCK)):
    _FILE_TYPES[_kind >> 12] = _ft


cdef inline unsigned char _file_type(unsigned int mode) noexcept:
    return _FILE_TYPES[(mode >> 12) & 0xF]


cdef inline void _put16(unsigned char *p, unsigned int v) noexcept:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF


cdef inline void _put32(unsigned char *p, unsigned int v) noexcept:
    _put16(p, v & 0xFFFF)
    _put16(p + 2, v >> 16)


cdef inline void _put64(unsigned char *p, unsigned long long v) noexcept:
    _put32(p, v & 0xFFFFFFFF)
    _put32(p + 4, v >> 32)


cdef bytes _chunk_map(list chunks, object base):
    """A chunk-based file's block map: 4-byte addresses, holes kept as ``EROFS_NULL_ADDR``."""
    cdef list addrs = []
    for c in chunks:
        if c != EROFS_NULL_ADDR:
            c += base
            if c >= EROFS_NULL_ADDR:
                raise OverflowError("EROFS block addresses are 32-bit: the disk would pass 16 TiB")
        addrs.append(c)
    return struct.pack(f"<{len(addrs)}I", *addrs)


cdef list _pack_dir(list names):
    """A directory's sorted names, with "." and "..", cut into blocks: [(bytes used, [name])]."""
    names = list(names)
    bisect.insort(names, b".")
    bisect.insort(names, b"..")
    cdef list blocks = [], current = []
    cdef Py_ssize_t used = 0, need
    for name in names:
        need = EROFS_DIRENT_SIZE + len(name)
        if used + need > EROFS_BLKSZ:
            blocks.append((used, current))
            current, used = [], 0
        current.append(name)
        used += need
    blocks.append((used, current))
    return blocks


cdef bytes _xattr_ibody(dict xattrs):
    """Header (with the name filter: a set bit means no xattr hashes there) and inline entries."""
    if not xattrs:
        return b""
    cdef uint32_t present = 0
    for name in xattrs:
        present |= 1u << xattr_filter_bit(name)
    parts = [struct.pack("<I", ~present & 0xFFFFFFFF) + bytes(EROFS_XATTR_HEADER - 4)]
    for (index, suffix), value in sorted((_xattr_key(k), v) for k, v in xattrs.items()):
        entry = _XATTR_ENTRY.pack(len(suffix), index, len(value)) + suffix + value
        parts.append(entry + bytes(-len(entry) % 4))
    return b"".join(parts)


cdef unsigned long long _assign_nids(list order) except? 0:
    """Place inodes on 32-byte slots, never letting a footprint that fits a block cross one.

    Slot 0 stays empty: st_ino is the nid, and readdir hides entries whose inode number is 0.
    """
    cdef unsigned long long cursor = EROFS_SLOT
    cdef Node node
    for node in order:
        if node.footprint > EROFS_BLKSZ or cursor % EROFS_BLKSZ + node.footprint > EROFS_BLKSZ:
            cursor = (cursor + EROFS_BLKSZ - 1) // EROFS_BLKSZ * EROFS_BLKSZ
        node.nid = cursor // EROFS_SLOT
        cursor += (node.footprint + EROFS_SLOT - 1) // EROFS_SLOT * EROFS_SLOT
    return cursor


cdef int _pack_inode(Node node, bytearray meta) except -1:
    """The inode, its xattrs and its inline data at the node's slot (fields per spec section 4)."""
    cdef unsigned char *p = meta
    cdef unsigned long long at = node.nid * EROFS_SLOT
    cdef Py_ssize_t nibody = len(node.ibody), ninline = len(node.inline)
    cdef unsigned int icount = (nibody - EROFS_XATTR_HEADER) // 4 + 1 if nibody else 0
    cdef Py_ssize_t core = EROFS_INODE_EXTENDED if node.extended else EROFS_INODE_COMPACT
    if at + core + nibody + ninline > <unsigned long long>len(meta):
        raise AssertionError("an inode's footprint runs past the metadata area")
    p += at
    # Field offsets as in erofs_structs.EXTENDED_INODE and COMPACT_INODE (little-endian); the
    # format, xattr count, mode, i_u and ino sit at the same places in both.
    _put16(p, <unsigned int>node.extended | (node.layout << 1))
    _put16(p + 2, icount)
    _put16(p + 4, node.mode)
    _put32(p + 16, node.i_u)
    _put32(p + 20, node.ino)
    if node.extended:
        _put64(p + 8, node.size)
        _put32(p + 24, node.uid)
        _put32(p + 28, node.gid)
        _put64(p + 32, <unsigned long long><long long>node.mtime)
        _put32(p + 40, node.mtime_nsec)
        _put32(p + 44, node.nlink)
    else:
        _put16(p + 6, node.nlink)
        _put32(p + 8, node.size)
        _put16(p + 24, node.uid)
        _put16(p + 26, node.gid)
    p += core
    if nibody:
        memcpy(p, <const char *>node.ibody, nibody)
    if ninline:
        memcpy(p + nibody, <const char *>node.inline, ninline)
    return 0
