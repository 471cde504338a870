# distutils: libraries = z
"""Read a disk image's container format and find the file system inside it.

Everything here reads with ``pread`` (GIL released) and only the few KiB a decision needs: a
header, one L1/L2 entry or grain-table entry per guest read, a superblock, a partition table.
Every offset and length taken from the image is checked against the file before it is used, so a
hostile image yields ``InvalidDiskImageError`` and never a crash, a hang or a large allocation.
"""
import os
import re
import stat
import struct

from libc.errno cimport errno
from libc.stdint cimport uint64_t
from libc.string cimport memset
from posix.unistd cimport pread
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from microsandbox._core.diskfmt cimport *
from microsandbox.errors import InvalidDiskImageError


cdef extern from "zlib.h" nogil:
    ctypedef struct z_stream:
        const unsigned char *next_in
        unsigned int avail_in
        unsigned char *next_out
        unsigned int avail_out
        void *zalloc
        void *zfree
        void *opaque
    int inflateInit2(z_stream *strm, int windowBits)
    int inflate(z_stream *strm, int flush)
    int inflateEnd(z_stream *strm)
    int Z_OK, Z_STREAM_END, Z_FINISH, Z_BUF_ERROR


def _bad(str path, str why, **context):
    return InvalidDiskImageError(f"{path}: {why}", path=path, **context)


cdef bytes _pread(int fd, uint64_t off, Py_ssize_t n, str path, str what):
    """Exactly ``n`` bytes at ``off`` or an error naming what was being read."""
    cdef bytes buf = PyBytes_FromStringAndSize(NULL, n)
    cdef char *p = PyBytes_AS_STRING(buf)
    cdef Py_ssize_t got = 0, r = 0
    while got < n:
        with nogil:
            r = pread(fd, p + got, n - got, off + got)
        if r < 0:
            raise _bad(path, f"cannot read {what} at byte {off + got}: {os.strerror(errno)}")
        if r == 0:
            raise _bad(path, f"truncated: {what} at byte {off} needs {n} bytes but the file ends first",
                       offset=off)
        got += r
    return buf


cdef bytes _inflate(bytes src, Py_ssize_t out_len, int wbits, str path, str what):
    """Inflate ``src`` into exactly ``out_len`` bytes (shorter output is zero-filled, as QEMU does)."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, out_len)
    cdef z_stream zs
    cdef int rc
    memset(&zs, 0, sizeof(zs))
    if inflateInit2(&zs, wbits) != Z_OK:
        raise MemoryError("zlib inflateInit2 failed")
    zs.next_in = <const unsigned char *>PyBytes_AS_STRING(src)
    zs.avail_in = <unsigned int>len(src)
    zs.next_out = <unsigned char *>PyBytes_AS_STRING(out)
    zs.avail_out = <unsigned int>out_len
    with nogil:
        rc = inflate(&zs, Z_FINISH)
        inflateEnd(&zs)
    if rc != Z_STREAM_END and not (rc == Z_BUF_ERROR and zs.avail_out == 0):
        raise _bad(path, f"corrupt compressed {what}: zlib error {rc}")
    if zs.avail_out:
        memset(PyBytes_AS_STRING(out) + (out_len - zs.avail_out), 0, zs.avail_out)
    return out


cdef class Source:
    """A guest disk: ``read(off, n)`` returns guest bytes, unallocated ranges read as zeros."""
    cdef readonly str path
    cdef readonly uint64_t size

    cpdef bytes read(self, uint64_t off, Py_ssize_t n):
        raise NotImplementedError

    cdef bytes read_clipped(self, uint64_t off, Py_ssize_t n):
        """Like ``read`` but clipped to the disk's end (a superblock probe past the end is empty)."""
        if off >= self.size:
            return b""
        if off + n > self.size:
            n = <Py_ssize_t>(self.size - off)
        return self.read(off, n)


cdef class RawSource(Source):
    cdef int fd
    cdef uint64_t base

    def __init__(self, int fd, str path, uint64_t size, uint64_t base=0):
        self.fd, self.path, self.size, self.base = fd, path, size, base

    cpdef bytes read(self, uint64_t off, Py_ssize_t n):
        return _pread(self.fd, self.base + off, n, self.path, "data")


cdef class ZeroSource(Source):
    def __init__(self, str path, uint64_t size):
        self.path, self.size = path, size

    cpdef bytes read(self, uint64_t off, Py_ssize_t n):
        return bytes(n)


cdef class Qcow2Source(Source):
    cdef int fd
    cdef uint64_t file_size, l1_offset, cluster_size
    cdef unsigned int cluster_bits, l1_size, l2_entry_len, l2_entries, version
    cdef bint zero_flag, zstd_clusters
    cdef readonly object backing_file

    def __init__(self, int fd, str path, uint64_t file_size):
        self.fd, self.path, self.file_size = fd, path, file_size
        if file_size < QCOW2_HEADER_V2_LEN:
            raise _bad(path, "truncated qcow2 header")
        h = _pread(fd, 0, QCOW2_HEADER_V2_LEN, path, "qcow2 header")
        (_, self.version, backing_off, backing_len, self.cluster_bits, self.size, crypt,
         self.l1_size, self.l1_offset) = struct.unpack_from(">IIQIIQIIQ", h)
        if self.version not in (2, 3):
            raise _bad(path, f"unsupported qcow2 version {self.version} (2 and 3 are known)")
        if not QCOW2_MIN_CLUSTER_BITS <= self.cluster_bits <= QCOW2_MAX_CLUSTER_BITS:
            raise _bad(path, f"qcow2 cluster_bits {self.cluster_bits} is outside "
                             f"{QCOW2_MIN_CLUSTER_BITS}..{QCOW2_MAX_CLUSTER_BITS}")
        if crypt:
            raise _bad(path, "the qcow2 image is encrypted; decrypt it with qemu-img convert first")
        self.cluster_size = 1ULL << self.cluster_bits
        self.l2_entry_len = 8
        self.zero_flag = self.version >= 3
        if self.version >= 3:
            self._read_v3_header(file_size)
        self.l2_entries = <unsigned int>(self.cluster_size // self.l2_entry_len)
        self._check_l1()
        self.backing_file = None
        if backing_off:
            if backing_len == 0 or backing_len > 1023 or backing_off + backing_len > file_size:
                raise _bad(path, "qcow2 backing file name lies outside the header")
            raw_name = _pread(fd, backing_off, backing_len, path, "backing file name")
            self.backing_file = raw_name.decode("utf-8", "replace")

    cdef _read_v3_header(self, uint64_t file_size):
        if file_size < 104:
            raise _bad(self.path, "truncated qcow2 v3 header")
        h = _pread(self.fd, QCOW2_HEADER_V2_LEN, 32, self.path, "qcow2 v3 header")
        incompat, _, _, _, header_len = struct.unpack_from(">QQQII", h)
        unknown = incompat & ~(<unsigned long long>QCOW2_INCOMPAT_KNOWN)
        if unknown:
            raise _bad(self.path, f"qcow2 uses unknown incompatible features 0x{unknown:x}")
        if incompat & (1 << 2):
            raise _bad(self.path, "qcow2 keeps its data in an external file; that is not supported")
        if incompat & QCOW2_INCOMPAT_EXTL2:
            self.l2_entry_len = 16
        if incompat & (1 << 3) and header_len > 104:
            ctype = _pread(self.fd, 104, 1, self.path, "compression type")[0]
            if ctype != QCOW2_COMPRESSION_ZLIB:
                self.zstd_clusters = True

    cdef _check_l1(self):
        cdef uint64_t per_l1 = self.cluster_size * self.l2_entries
        cdef uint64_t need = (self.size + per_l1 - 1) // per_l1
        if self.l1_size < need:
            raise _bad(self.path, f"qcow2 L1 table has {self.l1_size} entries but {need} are needed "
                                  f"for a {self.size}-byte disk")
        if self.l1_size and (self.l1_offset % 8 or self.l1_offset + 8ULL * self.l1_size > self.file_size):
            raise _bad(self.path, "qcow2 L1 table points past the end of the file",
                       offset=self.l1_offset)

    cdef bytes _cluster(self, uint64_t cluster_index):
        cdef uint64_t l1_index = cluster_index // self.l2_entries
        cdef uint64_t l2_index = cluster_index % self.l2_entries
        cdef uint64_t l1e, l2_off, l2e, data_off
        if l1_index >= self.l1_size:
            return None
        l1e = struct.unpack(">Q", _pread(self.fd, self.l1_offset + 8 * l1_index, 8, self.path, "L1 entry"))[0]
        l2_off = l1e & QCOW2_OFFSET_MASK
        if l2_off == 0:
            return None
        if l2_off % self.cluster_size or l2_off + self.cluster_size > self.file_size:
            raise _bad(self.path, "qcow2 L2 table points past the end of the file", offset=l2_off)
        l2e = struct.unpack(">Q", _pread(self.fd, l2_off + self.l2_entry_len * l2_index, 8,
                                         self.path, "L2 entry"))[0]
        if l2e & QCOW2_COMPRESSED:
            return self._compressed_cluster(l2e)
        if self.zero_flag and l2e & QCOW2_ZERO:
            return None
        data_off = l2e & QCOW2_OFFSET_MASK
        if data_off == 0:
            return None  # unallocated: would come from the backing file, which is never opened
        if data_off % self.cluster_size or data_off >= self.file_size:
            raise _bad(self.path, "qcow2 data cluster points past the end of the file", offset=data_off)
        avail = min(self.cluster_size, self.file_size - data_off)
        data = _pread(self.fd, data_off, avail, self.path, "data cluster")
        return data if avail == self.cluster_size else data + bytes(self.cluster_size - avail)

    cdef bytes _compressed_cluster(self, uint64_t l2e):
        if self.zstd_clusters:
            raise _bad(self.path, "qcow2 clusters use zstd compression; convert the image with "
                                  "`qemu-img convert -O qcow2` to read it")
        cdef unsigned int x = 62 - (self.cluster_bits - 8)
        cdef uint64_t off = l2e & ((1ULL << x) - 1)
        cdef uint64_t sectors = ((l2e >> x) & ((1ULL << (self.cluster_bits - 8)) - 1)) + 1
        cdef uint64_t length = sectors * 512 - (off & 511)
        if off >= self.file_size:
            raise _bad(self.path, "qcow2 compressed cluster points past the end of the file", offset=off)
        length = min(length, self.file_size - off)
        return _inflate(_pread(self.fd, off, length, self.path, "compressed cluster"),
                        self.cluster_size, -12, self.path, "qcow2 cluster")

    cpdef bytes read(self, uint64_t off, Py_ssize_t n):
        out = bytearray()
        cdef uint64_t pos = off, end = off + n, in_cluster, take
        if end > self.size:
            raise _bad(self.path, "read past the end of the virtual disk", offset=off)
        while pos < end:
            in_cluster = pos & (self.cluster_size - 1)
            take = min(self.cluster_size - in_cluster, end - pos)
            cluster = self._cluster(pos >> self.cluster_bits)
            out += cluster[in_cluster:in_cluster + take] if cluster is not None else bytes(take)
            pos += take
        return bytes(out)


_VMDK_HEADER = struct.Struct("<IIIQQQQIQQQBccccH")


cdef class VmdkSparseSource(Source):
    """A hosted sparse extent (monolithicSparse, streamOptimized, or a SPARSE extent file)."""
    cdef int fd
    cdef uint64_t file_size, grain_sectors, gd_offset, capacity
    cdef unsigned int gtes_per_gt
    cdef bint compressed

    def __init__(self, int fd, str path, uint64_t file_size):
        self.fd, self.path, self.file_size = fd, path, file_size
        fields = self._header(0)
        flags, self.capacity, self.grain_sectors, gtes, rgd, gd = (
            fields[2], fields[3], fields[4], fields[7], fields[8], fields[9])
        if gd == VMDK_GD_AT_END:
            if file_size < 1024 + VMDK_HEADER_LEN:
                raise _bad(path, "streamOptimized VMDK has no footer")
            footer = self._header(file_size - 1024)
            flags, gtes, gd = footer[2], footer[7], footer[9]
        elif gd == 0 and rgd:
            gd = rgd
        if not (1 <= self.grain_sectors <= VMDK_MAX_GRAIN_SECTORS and
                self.grain_sectors & (self.grain_sectors - 1) == 0):
            raise _bad(path, f"VMDK grain size of {self.grain_sectors} sectors is not a power of two "
                             f"up to {VMDK_MAX_GRAIN_SECTORS}")
        if not 1 <= gtes <= VMDK_MAX_GTES_PER_GT:
            raise _bad(path, f"VMDK grain table size {gtes} is out of range")
        if self.capacity > (1ULL << 52):
            raise _bad(path, f"VMDK capacity of {self.capacity} sectors is absurd")
        if gd == 0 or gd * 512 >= file_size:
            raise _bad(path, "VMDK grain directory points past the end of the file", offset=gd * 512)
        self.gtes_per_gt, self.gd_offset = gtes, gd
        self.compressed = bool(flags & VMDK_FLAG_COMPRESSED)
        self.size = self.capacity * 512

    cdef tuple _header(self, uint64_t at):
        h = _pread(self.fd, at, VMDK_HEADER_LEN, self.path, "VMDK header")
        fields = _VMDK_HEADER.unpack_from(h)
        if fields[0] != VMDK_SPARSE_MAGIC:
            raise _bad(self.path, f"no VMDK sparse header at byte {at}", offset=at)
        if fields[1] not in (1, 2, 3):
            raise _bad(self.path, f"unsupported VMDK sparse version {fields[1]}")
        return fields

    cdef uint64_t _entry(self, uint64_t table_sector, uint64_t index, str what) except? 0:
        cdef uint64_t at = table_sector * 512 + 4 * index
        if at + 4 > self.file_size:
            raise _bad(self.path, f"VMDK {what} points past the end of the file", offset=at)
        return struct.unpack("<I", _pread(self.fd, at, 4, self.path, what))[0]

    cdef bytes _grain(self, uint64_t grain):
        cdef uint64_t grain_bytes = self.grain_sectors * 512
        cdef uint64_t gt = self._entry(self.gd_offset, grain // self.gtes_per_gt, "grain directory")
        if gt == 0:
            return None
        cdef uint64_t sector = self._entry(gt, grain % self.gtes_per_gt, "grain table")
        if sector <= 1:
            return None  # 0: unallocated, 1: an explicit zero grain
        cdef uint64_t at = sector * 512
        if at >= self.file_size:
            raise _bad(self.path, "VMDK grain points past the end of the file", offset=at)
        if not self.compressed:
            avail = min(grain_bytes, self.file_size - at)
            data = _pread(self.fd, at, avail, self.path, "grain")
            return data if avail == grain_bytes else data + bytes(grain_bytes - avail)
        if at + 12 > self.file_size:
            raise _bad(self.path, "truncated compressed VMDK grain", offset=at)
        _, length = struct.unpack("<QI", _pread(self.fd, at, 12, self.path, "grain marker"))
        if length == 0 or length > 2 * grain_bytes + 4096 or at + 12 + length > self.file_size:
            raise _bad(self.path, f"compressed VMDK grain of {length} bytes does not fit the file",
                       offset=at)
        return _inflate(_pread(self.fd, at + 12, length, self.path, "compressed grain"),
                        grain_bytes, 15, self.path, "VMDK grain")

    cpdef bytes read(self, uint64_t off, Py_ssize_t n):
        cdef uint64_t grain_bytes = self.grain_sectors * 512
        cdef uint64_t pos = off, end = off + n, within, take
        if end > self.size:
            raise _bad(self.path, "read past the end of the virtual disk", offset=off)
        out = bytearray()
        while pos < end:
            within = pos % grain_bytes
            take = min(grain_bytes - within, end - pos)
            grain = self._grain(pos // grain_bytes)
            out += grain[within:within + take] if grain is not None else bytes(take)
            pos += take
        return bytes(out)


_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(FLAT|SPARSE|ZERO)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$')
_CREATE_TYPE = re.compile(r'^createType\s*=\s*"([^"]*)"\s*$')
_DESCRIPTOR_MARK = b"# Disk DescriptorFile"


cdef class VmdkDescriptorSource(Source):
    """A text descriptor whose FLAT/SPARSE/ZERO extents live beside it."""
    cdef list extents   # (start, length, Source)
    cdef list fds
    cdef readonly str create_type

    def __init__(self, bytes text, str path):
        self.path, self.extents, self.fds, self.create_type = path, [], [], ""
        try:
            self._parse(text)
        except BaseException:
            self.close()
            raise

    cdef _parse(self, bytes text):
        path = self.path
        folder = os.path.dirname(os.path.abspath(path))
        cdef uint64_t start = 0
        try:
            lines = text.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise _bad(path, "VMDK descriptor is not UTF-8 text") from None
        for line in lines:
            line = line.strip()
            m = _CREATE_TYPE.match(line)
            if m:
                self.create_type = m.group(1)
                continue
            m = _EXTENT.match(line)
            if not m:
                continue
            sectors = int(m.group(2))
            if sectors == 0 or sectors > (1 << 52):
                raise _bad(path, f"VMDK extent of {sectors} sectors is out of range")
            length = sectors * 512
            kind = m.group(3)
            if kind == "ZERO":
                src = ZeroSource(path, length)
            else:
                if m.group(4) is None:
                    raise _bad(path, f"VMDK {kind} extent names no file")
                src = self._open_extent(folder, m.group(4), kind, int(m.group(5) or 0), length)
            self.extents.append((start, length, src))
            start += length
        if not self.extents:
            raise _bad(path, "VMDK descriptor lists no extents")
        self.size = start

    cdef Source _open_extent(self, str folder, str name, str kind, uint64_t offset, uint64_t length):
        if not name or os.path.isabs(name):
            raise _bad(self.path, f"VMDK extent {name!r} is an absolute path; extents must lie beside "
                                  "the descriptor")
        target = os.path.realpath(os.path.join(folder, name))
        if os.path.commonpath([target, os.path.realpath(folder)]) != os.path.realpath(folder):
            raise _bad(self.path, f"VMDK extent {name!r} leaves the descriptor's folder")
        if target == os.path.realpath(self.path):
            raise _bad(self.path, f"VMDK extent {name!r} refers to the descriptor itself (a loop)")
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise _bad(self.path, f"cannot open VMDK extent {name!r}: {exc.strerror}") from None
        self.fds.append(fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _bad(self.path, f"VMDK extent {name!r} is not a regular file")
        if kind == "SPARSE":
            head = _pread(fd, 0, 4, target, "extent header") if st.st_size >= 4 else b""
            if struct.unpack("<I", head.ljust(4, b"\0"))[0] != VMDK_SPARSE_MAGIC:
                raise _bad(self.path, f"VMDK SPARSE extent {name!r} is not a hosted sparse extent "
                                      "(nested descriptors are refused)")
            src = VmdkSparseSource(fd, target, st.st_size)
            if src.size < length:
                raise _bad(self.path, f"VMDK SPARSE extent {name!r} is smaller than the descriptor says")
            return src
        if offset * 512 + length > <uint64_t>st.st_size:
            raise _bad(self.path, f"VMDK FLAT extent {name!r} is shorter than the descriptor says "
                                  f"({st.st_size} bytes, {offset * 512 + length} needed)")
        return RawSource(fd, target, length, offset * 512)

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    cpdef bytes read(self, uint64_t off, Py_ssize_t n):
        cdef uint64_t pos = off, end = off + n
        if end > self.size:
            raise _bad(self.path, "read past the end of the virtual disk", offset=off)
        out = bytearray()
        for start, length, src in self.extents:
            if pos >= end:
                break
            if pos >= start + length:
                continue
            take = min(start + length, end) - pos
            out += (<Source>src).read(pos - start, take)
            pos += take
        return bytes(out)


# ----------------------------------------------------------------------------------------------
# File systems and partition tables, read through any Source.

_GPT_LINUX_TYPES = {
    bytes.fromhex("af3dc60f838472478e793d69d8477de4"),   # Linux filesystem data
    bytes.fromhex("e3bc684fcde8b14d96e7fbcaf984b709"),   # Linux root (x86-64)
}
_MBR_EXTENDED = {0x05, 0x0F, 0x85}


cdef str _ext_kind(bytes sb):
    compat, incompat, ro_compat = struct.unpack_from("<III", sb, EXT_COMPAT_OFF)
    if incompat & ~(<unsigned int>EXT3_INCOMPAT_KNOWN) or ro_compat & ~(<unsigned int>EXT2_RO_COMPAT_KNOWN):
        return "ext4"
    return "ext3" if compat & EXT3_COMPAT_JOURNAL else "ext2"


cdef object _fs_at(Source src, uint64_t base):
    """The file system whose superblock starts at ``base``, or None."""
    head = src.read_clipped(base, 4096)
    if len(head) >= 1028 and struct.unpack_from("<I", head, EROFS_SB_OFF)[0] == EROFS_MAGIC:
        return "erofs"
    if len(head) >= EXT_RO_COMPAT_OFF + 4 and struct.unpack_from("<H", head, EXT_MAGIC_OFF)[0] == EXT_MAGIC:
        return _ext_kind(head)
    if head[:4] == b"XFSB":
        return "xfs"
    if head[:4] == b"hsqs":
        return "squashfs"
    if len(head) >= 512 and head[510:512] == b"\x55\xaa" and (
            head[FAT_FS_TYPE16_OFF:FAT_FS_TYPE16_OFF + 3] == b"FAT" or
            head[FAT_FS_TYPE32_OFF:FAT_FS_TYPE32_OFF + 5] == b"FAT32"):
        return "vfat"
    if src.read_clipped(base + BTRFS_MAGIC_OFF, 8) == b"_BHRfS_M":
        return "btrfs"
    return None


cdef tuple _gpt_partition(Source src):
    hdr = src.read_clipped(SECTOR, SECTOR)
    if len(hdr) < SECTOR or hdr[:8] != b"EFI PART":
        raise _bad(src.path, "protective MBR without a complete GPT header")
    entries_lba, count, entry_len = struct.unpack_from("<QII", hdr, 72)
    if not 1 <= count <= GPT_MAX_ENTRIES or not GPT_MIN_ENTRY_LEN <= entry_len <= GPT_MAX_ENTRY_LEN \
            or entry_len % GPT_MIN_ENTRY_LEN:
        raise _bad(src.path, f"GPT header claims {count} entries of {entry_len} bytes")
    if entries_lba * SECTOR + count * entry_len > src.size:
        raise _bad(src.path, "GPT partition entries lie past the end of the disk")
    table = src.read(entries_lba * SECTOR, count * entry_len)
    used = []
    for i in range(count):
        entry = table[i * entry_len:(i + 1) * entry_len]
        if entry[:16] != bytes(16):
            first, last = struct.unpack_from("<QQ", entry, 32)
            used.append((i + 1, entry[:16], first, last))
    return _choose(src, [(n, t in _GPT_LINUX_TYPES, first) for n, t, first, _ in used])


cdef tuple _mbr_partition(Source src, bytes mbr):
    used = []
    for i in range(4):
        e = mbr[MBR_TABLE_OFF + i * MBR_ENTRY_LEN:MBR_TABLE_OFF + (i + 1) * MBR_ENTRY_LEN]
        ptype = e[4]
        start, count = struct.unpack_from("<II", e, 8)
        if ptype and ptype not in _MBR_EXTENDED and count:
            used.append((i + 1, ptype == MBR_TYPE_LINUX, start))
    return _choose(src, used)


cdef tuple _choose(Source src, list used):
    """First Linux partition, else the only partition; (number, fstype) or (None, None)."""
    pick = next((u for u in used if u[1]), None) or (used[0] if len(used) == 1 else None)
    if pick is None:
        return None, None
    number, _, first_lba = pick
    if first_lba * SECTOR >= src.size:
        raise _bad(src.path, f"partition {number} starts past the end of the disk")
    return number, _fs_at(src, first_lba * SECTOR)


cdef tuple _filesystem(Source src):
    """(fstype, partition) for the whole disk, then through an MBR or GPT partition table."""
    fs = _fs_at(src, 0)
    if fs is not None:
        return fs, None
    mbr = src.read_clipped(0, SECTOR)
    if len(mbr) < SECTOR or mbr[MBR_SIGNATURE_OFF:MBR_SIGNATURE_OFF + 2] != b"\x55\xaa":
        return None, None
    if any(mbr[MBR_TABLE_OFF + i * MBR_ENTRY_LEN + 4] == MBR_TYPE_GPT_PROTECTIVE for i in range(4)):
        number, fs = _gpt_partition(src)
    else:
        number, fs = _mbr_partition(src, mbr)
    return fs, number


# ----------------------------------------------------------------------------------------------

def container_format(str path):
    """'qcow2', 'vmdk' or 'raw', from the first bytes of ``path`` alone."""
    fd = _open(path)
    try:
        return _container(fd, path, os.fstat(fd).st_size)[0]
    finally:
        os.close(fd)


cdef int _open(str path) except -1:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _bad(path, f"cannot open: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _bad(path, "not a regular file")
    return fd


cdef tuple _container(int fd, str path, uint64_t size):
    head = _pread(fd, 0, min(size, 512), path, "header") if size else b""
    if len(head) >= 4 and struct.unpack(">I", head[:4])[0] == QCOW2_MAGIC:
        return "qcow2", None
    if len(head) >= 4 and struct.unpack("<I", head[:4])[0] == VMDK_SPARSE_MAGIC:
        return "vmdk", None
    if head.lstrip().startswith(_DESCRIPTOR_MARK):
        if size > VMDK_DESCRIPTOR_MAX:
            raise _bad(path, f"VMDK descriptor is {size} bytes; descriptors are small text files")
        return "vmdk", _pread(fd, 0, size, path, "descriptor")
    return "raw", None


cdef tuple _source(int fd, str path):
    """(format, Source) for an open image."""
    size = os.fstat(fd).st_size
    fmt, text = _container(fd, path, size)
    if fmt == "qcow2":
        return fmt, Qcow2Source(fd, path, size)
    if text is not None:
        return fmt, VmdkDescriptorSource(text, path)
    if fmt == "vmdk":
        return fmt, VmdkSparseSource(fd, path, size)
    return fmt, RawSource(fd, path, size)


cdef object _with_source(str path, object use):
    fd = _open(path)
    src = None
    try:
        fmt, src = _source(fd, path)
        return use(fmt, src)
    finally:
        if isinstance(src, VmdkDescriptorSource):
            src.close()
        os.close(fd)


def flat_extents(str path):
    """[(file, byte offset in it, length)] of a VMDK descriptor made only of FLAT extents, each
    checked to lie inside the descriptor's folder: what a block device can serve directly."""
    def collect(fmt, src):
        if not isinstance(src, VmdkDescriptorSource):
            raise _bad(path, "not a VMDK descriptor with FLAT extents")
        out = []
        for start, length, extent in (<VmdkDescriptorSource>src).extents:
            if not isinstance(extent, RawSource):
                raise _bad(path, "only FLAT extents can back a virtio-blk disk")
            out.append(((<RawSource>extent).path, (<RawSource>extent).base, length))
        return out
    return _with_source(path, collect)


def read_guest(str path, uint64_t offset, Py_ssize_t length):
    """``length`` bytes of the guest disk at ``offset``, read through the container format."""
    return _with_source(path, lambda fmt, src: src.read(offset, length))


def probe(str path):
    """(format, virtual_size, fstype, partition, backing_file) of the disk image at ``path``."""
    def describe(fmt, src):
        fs, partition = _filesystem(src)
        return fmt, src.size, fs, partition, src.backing_file if fmt == "qcow2" else None
    return _with_source(path, describe)
