# distutils: libraries = z zstd
# distutils: sources = csrc/layers/gunzip.c
"""Streaming layer conversion: compressed tar bytes in, one EROFS image out, in one pass.

``Decoder`` inflates gzip or zstd (or passes plain tar through), detected by magic bytes, and
hashes the compressed and uncompressed streams as they go; ``convert`` parses tar headers (ustar,
GNU, PAX) and copies each file's bytes straight from the inflate buffer to its final blocks in the
output with ``pwrite`` (GIL released), so memory holds metadata only. Entries never touch the
host file system: paths are resolved inside an in-memory tree rooted at the layer.
"""
import base64
import hashlib
import os
import queue
import threading
import urllib.parse

from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free
from libc.errno cimport errno, EIO
from libc.string cimport memcmp, memcpy, memset
from posix.stat cimport S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG
from posix.unistd cimport pwrite

from microsandbox._core.erofs import ErofsWriter, xattr_storable
from microsandbox._core.erofs cimport Node, node_is_dir
from microsandbox._core.erofs_fs cimport EROFS_BLKSZ, EROFS_NAME_MAX, EROFS_NULL_ADDR
from microsandbox.errors import InvalidLayerError
from microsandbox.gcpause import paused


cdef extern from "layers/gunzip.h" nogil:
    ctypedef struct msb_gunzip:
        pass
    int MSB_GZ_OK, MSB_GZ_MEMBER_END, MSB_GZ_CORRUPT
    msb_gunzip *msb_gunzip_new()
    void msb_gunzip_free(msb_gunzip *g)
    int msb_gunzip_reset(msb_gunzip *g)
    int msb_gunzip_run(msb_gunzip *g, const unsigned char *inp, size_t *in_len, unsigned char *out,
                       size_t *out_len)
    const char *msb_gunzip_engine()


GZIP_ENGINE = msb_gunzip_engine().decode()


cdef extern from "zstd.h" nogil:
    ctypedef struct ZSTD_DStream:
        pass
    ctypedef struct ZSTD_inBuffer:
        const void *src
        size_t size
        size_t pos
    ctypedef struct ZSTD_outBuffer:
        void *dst
        size_t size
        size_t pos
    ZSTD_DStream *ZSTD_createDStream()
    size_t ZSTD_freeDStream(ZSTD_DStream *zds)
    size_t ZSTD_initDStream(ZSTD_DStream *zds)
    size_t ZSTD_decompressStream(ZSTD_DStream *zds, ZSTD_outBuffer *output, ZSTD_inBuffer *input)
    unsigned ZSTD_isError(size_t code)
    const char *ZSTD_getErrorName(size_t code)


DEF IN_SIZE = 1 << 20
DEF OUT_SIZE = 1 << 18
DEF IN_SLOTS = 3      # ring buffers: one being filled, the rest waiting for (or in) the hasher
DEF OUT_SLOTS = 6
DEF BLOCK = 512
DEF SYNC_EVERY = 8 << 20

# Bounds that keep a hostile layer from exhausting memory; each is far beyond real images.
MAX_PATH = 32768
MAX_META = 1 << 20            # one PAX header, GNU long name or sparse map
MAX_ENTRIES = 4_000_000
MAX_XATTR_VALUE = 65535
MAX_SYMLINK = 4095

cdef enum Kind:
    PLAIN = 0
    GZIP = 1
    ZSTD = 2

KIND_NAMES = ("tar", "gzip", "zstd")


cdef inline bint _all_zero(const unsigned char *p, size_t n) noexcept nogil:
    return n == 0 or (p[0] == 0 and memcmp(p, p + 1, n - 1) == 0)


def _bad(str why, **context):
    return InvalidLayerError(f"invalid layer: {why}", **context)


class _Worker:
    """A thread that runs submitted calls in order, for work that drops the GIL and must not hold
    up the thread that submits it: hashing the compressed input (hashlib releases the GIL) and
    syncing the output as it grows. Every call runs, even after one has failed (a hash call must
    still hand its slot back); the first exception raised is kept for ``close``."""

    def __init__(self, name):
        self.queue = queue.SimpleQueue()
        self.error = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                item[0](*item[1:])
            except BaseException as exc:
                if self.error is None:
                    self.error = exc

    def submit(self, fn, *args):
        self.queue.put((fn,) + args)

    def idle(self):
        return self.queue.empty()

    def close(self, bint check=True):
        """Wait until every submitted call has run; with ``check``, raise what the first failing
        one raised (without it, the caller is already failing for its own reason)."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if check and self.error is not None:
            error, self.error = self.error, None
            raise error


def _hash_then_release(hasher, view, free_slots):
    """Hash a ring slot, then hand the slot back to its filler."""
    try:
        hasher.update(view)
    finally:
        free_slots.release()


cdef class Decoder:
    """Decompressed tar bytes from ``src.readinto``, hashed on both sides of the inflater.

    Four threads share the work: a producer reads the source and inflates into a ring of output
    slots; a hasher hashes the compressed input (the blob digest) and the inflated slots (the
    diff_id); the caller's thread parses and writes from the slots the producer has finished; a
    sync worker fdatasyncs the output as it grows. A slot goes back to the producer once both the
    caller and the hasher are done with it."""
    cdef object src
    cdef readonly int kind
    cdef unsigned char *inbase
    cdef unsigned char *outbase
    # producer side
    cdef unsigned char *inbuf
    cdef int in_slot, p_slot
    cdef object in_view, p_view
    cdef size_t in_pos, in_end, p_end
    cdef bint src_eof, member_done
    cdef msb_gunzip *gz
    cdef ZSTD_DStream *zd
    cdef readonly unsigned long long compressed_size
    # consumer side
    cdef unsigned char *outbuf
    cdef int out_slot
    cdef object out_view
    cdef size_t out_pos, out_end
    cdef bint ended
    cdef readonly unsigned long long plain_size
    cdef unsigned long long unflushed   # bytes written since the output was last synced
    # shared
    cdef list in_views, out_views
    # Semaphores: input slots hashed; output slots consumed; output slots hashed. Consumer and
    # hasher each finish slots in order, so one count from each frees the oldest slot.
    cdef object in_free, out_free, out_hashed
    cdef object ready                  # (slot, bytes) from the producer, or the exception it hit
    cdef object producer
    cdef bint stopping
    cdef readonly object sha_compressed, sha_plain
    cdef object hasher, flusher

    def __cinit__(self):
        self.inbase = <unsigned char *>malloc(IN_SIZE * IN_SLOTS)
        self.outbase = <unsigned char *>malloc(OUT_SIZE * OUT_SLOTS)
        if self.inbase == NULL or self.outbase == NULL:
            raise MemoryError()
        self.inbuf, self.outbuf = self.inbase, self.outbase
        self.in_slot = self.p_slot = self.out_slot = -1
        self.gz = NULL
        self.zd = NULL

    def __dealloc__(self):
        if self.gz != NULL:
            msb_gunzip_free(self.gz)
        if self.zd != NULL:
            ZSTD_freeDStream(self.zd)
        free(self.inbase)
        free(self.outbase)

    def __init__(self, src):
        self.src = src
        whole_in = memoryview(<unsigned char[:IN_SIZE * IN_SLOTS]>self.inbase)
        whole_out = memoryview(<unsigned char[:OUT_SIZE * OUT_SLOTS]>self.outbase)
        self.in_views = [whole_in[i * IN_SIZE:(i + 1) * IN_SIZE] for i in range(IN_SLOTS)]
        self.out_views = [whole_out[i * OUT_SIZE:(i + 1) * OUT_SIZE] for i in range(OUT_SLOTS)]
        self.in_free, self.out_free = threading.Semaphore(IN_SLOTS), threading.Semaphore(OUT_SLOTS)
        self.out_hashed = threading.Semaphore(OUT_SLOTS)
        self.ready = queue.SimpleQueue()
        self.sha_plain = hashlib.sha256()
        self.hasher = _Worker("msb-layer-hash")
        self.flusher = _Worker("msb-layer-sync")
        self._read_input()
        head = bytes(self.in_view[:min(self.in_end, 4)])
        if head[:2] == b"\x1f\x8b":
            self.kind = GZIP
            self.gz = msb_gunzip_new()
            if self.gz == NULL:
                raise MemoryError("cannot start gzip decoding")
        elif head == b"\x28\xb5\x2f\xfd" or (head[1:] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50):
            # a zstd frame, or a skippable frame (magic 0x184D2A5?) that precedes one
            self.kind = ZSTD
            self.zd = ZSTD_createDStream()
            if self.zd == NULL:
                raise MemoryError("ZSTD_createDStream failed")
            ZSTD_initDStream(self.zd)
        else:
            self.kind = PLAIN
        # A plain tar is its own "compressed" stream: one hash serves both digests.
        self.sha_compressed = self.sha_plain if self.kind == PLAIN else hashlib.sha256()
        if self.in_end:
            self._hand_over_input()
        self.producer = threading.Thread(target=self._produce_all, name="msb-layer-inflate", daemon=True)
        self.producer.start()

    # ---- producer thread -------------------------------------------------------------------

    def _produce_all(self):
        """Fill output slots until the stream ends, an error stops it, or the consumer closes."""
        try:
            while True:
                self.out_free.acquire()
                self.out_hashed.acquire()
                if self.stopping:
                    return
                self.p_slot = (self.p_slot + 1) % OUT_SLOTS
                self.p_view = self.out_views[self.p_slot]
                self.p_end = 0
                self._fill_output()
                if self.p_end:
                    self.hasher.submit(_hash_then_release, self.sha_plain, self.p_view[:self.p_end],
                                       self.out_hashed)
                else:
                    self.out_hashed.release()
                self.ready.put((self.p_slot, self.p_end))
                if self.p_end == 0:
                    return
        except BaseException as exc:
            self.ready.put(exc)

    cdef int _read_input(self) except -1:
        """Refill the input buffer from the source; hashes what was read."""
        if self.in_pos < self.in_end or self.src_eof:
            return 0
        self.in_free.acquire()
        self.in_slot = (self.in_slot + 1) % IN_SLOTS
        self.inbuf = self.inbase + self.in_slot * IN_SIZE
        self.in_view = self.in_views[self.in_slot]
        n = self.src.readinto(self.in_view)
        if n is None:
            self.in_free.release()
            raise _bad("the layer source returned no data (non-blocking source?)")
        self.in_pos, self.in_end = 0, n
        if n == 0:
            self.in_free.release()
            self.src_eof = True
            return 0
        self.compressed_size += n
        if self.sha_compressed is not None:   # None only for the first read, before the kind is known
            self._hand_over_input()
        return 0

    cdef _hand_over_input(self):
        """Hash the new input slot (a plain tar is hashed on the output side instead)."""
        if self.kind == PLAIN:
            self.in_free.release()
        else:
            self.hasher.submit(_hash_then_release, self.sha_compressed, self.in_view[:self.in_end],
                               self.in_free)

    cdef int _fill_output(self) except -1:
        """Inflate (or copy) into the producer's slot until it holds bytes or the stream ends."""
        cdef int rc
        cdef size_t zr, in_left, out_left
        cdef ZSTD_inBuffer zin
        cdef ZSTD_outBuffer zout
        cdef unsigned char *outbuf = self.outbase + self.p_slot * OUT_SIZE
        while self.p_end == 0:
            self._read_input()
            if self.kind == PLAIN:
                if self.src_eof:
                    return 0
                # Plain tar: the input buffer is the output; swap roles by copying once.
                n = min(self.in_end - self.in_pos, OUT_SIZE)
                self.p_view[:n] = self.in_view[self.in_pos:self.in_pos + n]
                self.in_pos += n
                self.p_end = n
            elif self.kind == GZIP:
                if self.src_eof:
                    if not self.member_done:
                        raise _bad("truncated gzip stream: it ends before its last member does")
                    return 0
                if self.member_done:
                    if msb_gunzip_reset(self.gz) != 0:
                        raise _bad("cannot restart gzip decoding for the next member")
                    self.member_done = False
                in_left, out_left = self.in_end - self.in_pos, OUT_SIZE
                with nogil:
                    rc = msb_gunzip_run(self.gz, self.inbuf + self.in_pos, &in_left, outbuf, &out_left)
                self.in_pos = self.in_end - in_left
                self.p_end = OUT_SIZE - out_left
                if rc == MSB_GZ_MEMBER_END:
                    self.member_done = True
                elif rc == MSB_GZ_CORRUPT:
                    raise _bad(f"corrupt gzip data near compressed byte {self.compressed_size - in_left}")
            else:
                if self.src_eof:
                    if not self.member_done:
                        raise _bad("truncated zstd stream: it ends inside a frame")
                    return 0
                zin.src, zin.size, zin.pos = self.inbuf + self.in_pos, self.in_end - self.in_pos, 0
                zout.dst, zout.size, zout.pos = outbuf, OUT_SIZE, 0
                with nogil:
                    zr = ZSTD_decompressStream(self.zd, &zout, &zin)
                if ZSTD_isError(zr):
                    raise _bad(f"corrupt zstd data: {ZSTD_getErrorName(zr).decode()}")
                self.in_pos += zin.pos
                self.p_end = zout.pos
                self.member_done = zr == 0
        return 0

    # ---- consumer (the caller's thread) ----------------------------------------------------

    cdef size_t _produce(self) except? 0:
        """Move to the producer's next finished slot; 0 means the stream has ended."""
        if self.ended:
            return 0
        if self.out_slot >= 0:
            self.out_free.release()   # done with the previous slot
            self.out_slot = -1
        item = self.ready.get()
        if isinstance(item, BaseException):
            self.ended = True
            raise item
        cdef int slot = item[0]
        cdef size_t n = item[1]
        self.out_pos, self.out_end = 0, n
        if n == 0:
            self.ended = True
            return 0
        self.out_slot = slot
        self.outbuf = self.outbase + <size_t>slot * OUT_SIZE
        self.out_view = self.out_views[slot]
        self.plain_size += n
        return n

    cdef size_t _avail(self) except? 0:
        if self.out_pos == self.out_end:
            return self._produce()
        return self.out_end - self.out_pos

    cdef bytes read_exact(self, size_t n, str what):
        parts = []
        cdef size_t got = 0, take
        while got < n:
            take = min(self._avail(), n - got)
            if take == 0:
                raise _bad(f"truncated tar stream: {what} ends early", offset=self.plain_size)
            parts.append(bytes(self.out_view[self.out_pos:self.out_pos + take]))
            self.out_pos += take
            got += take
        return b"".join(parts)

    cdef int read_block(self, unsigned char *dst) except -1:
        """The next 512-byte header block; returns 0 at a clean end of stream, 1 otherwise."""
        cdef size_t got = 0, take
        while got < BLOCK:
            take = min(self._avail(), BLOCK - got)
            if take == 0:
                if got == 0:
                    return 0
                raise _bad("truncated tar stream: a header block ends early", offset=self.plain_size)
            memcpy(dst + got, self.outbuf + self.out_pos, take)
            self.out_pos += take
            got += take
        return 1

    cdef int copy_to(self, int fd, uint64_t offset, uint64_t n, str what) except -1:
        """Copy ``n`` stream bytes to ``fd`` at ``offset`` (``fd`` < 0 skips them).

        All-zero runs are not written: the output is a fresh file whose unwritten ranges read as
        zeros, so zero-filled files cost no host disk space.
        """
        cdef size_t take, done
        cdef ssize_t w
        cdef int err = 0
        while n:
            take = <size_t>min(<uint64_t>self._avail(), n)
            if take == 0:
                raise _bad(f"truncated tar stream: the data of {what} ends early", offset=self.plain_size)
            if fd >= 0 and not _all_zero(self.outbuf + self.out_pos, take):
                done = 0
                with nogil:
                    while done < take:
                        w = pwrite(fd, self.outbuf + self.out_pos + done, take - done, offset + done)
                        if w <= 0:
                            err = errno if w < 0 else EIO
                            break
                        done += w
                if err:
                    raise OSError(err, os.strerror(err))
                # Sync as the image grows, on another thread: the fsync that publishes it then
                # has almost nothing left to wait for. Its error, if any, surfaces at ``drain``.
                self.unflushed += take
                if self.unflushed >= SYNC_EVERY and self.flusher.idle():
                    self.flusher.submit(os.fdatasync, fd)
                    self.unflushed = 0
            self.out_pos += take
            offset += take
            n -= take
        return 0

    def drain(self):
        """Consume the rest of the stream (the tar's zero padding) so both hashes cover it all."""
        while self._avail():
            self.out_pos = self.out_end
        self.producer.join()
        self.hasher.close()
        self.flusher.close()

    def close(self):
        """Stop the producer (it may be waiting for a free slot) and both workers."""
        self.stopping = True
        for _ in range(OUT_SLOTS):
            self.out_free.release()
            self.out_hashed.release()
        self.producer.join()
        self.hasher.close(False)
        self.flusher.close(False)


# ------------------------------------------------------------------------------------------------
# Header fields


cdef object _number(bytes field, str what):
    """A tar numeric field: octal text, or GNU base-256 (high bit set, two's complement)."""
    if field and field[0] == 0xFF:
        return int.from_bytes(field, "big", signed=True)
    if field and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _bad(f"{what} field {field!r} is not an octal number") from None


cdef bytes _cstr(bytes field):
    return field.split(b"\0", 1)[0]


cdef bint _checksum_ok(const unsigned char *raw, bytes hdr) except -1:
    """The header's sum with its checksum field read as spaces; old tars summed signed bytes."""
    cdef long unsigned_sum = 8 * 32, signed_sum = 8 * 32
    cdef int i
    for i in range(BLOCK):
        if i < 148 or i >= 156:
            unsigned_sum += raw[i]
            signed_sum += <signed char>raw[i]
    stored = _number(hdr[148:156], "checksum")
    return stored == unsigned_sum or stored == signed_sum


cdef dict _parse_pax(bytes data):
    """PAX records: ``"%d %s=%s\\n"`` with the length counting the whole record."""
    records = {}
    cdef Py_ssize_t pos = 0, n = len(data), length
    while pos < n:
        if data[pos] == 0:
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise _bad("malformed PAX header: a record has no length")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise _bad("malformed PAX header: a record length is not a number") from None
        if length <= space - pos + 1 or pos + length > n or data[pos + length - 1] != 0x0A:
            raise _bad("malformed PAX header: a record overruns the header")
        record = data[space + 1:pos + length - 1]
        key, eq, value = record.partition(b"=")
        if not eq:
            raise _bad("malformed PAX header: a record has no '='")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


cdef tuple _pax_time(bytes value):
    """(seconds, nanoseconds) from a PAX decimal time such as ``-1.25`` or ``1700000000.5``."""
    text = value.decode("ascii", "replace").strip()
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("+-").partition(".")
    try:
        total = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    except ValueError:
        raise _bad(f"malformed PAX time {text!r}") from None
    if negative:
        total = -total
    return total // 1_000_000_000, total % 1_000_000_000


_ACL_TAGS = {"user": (0x01, 0x02), "group": (0x04, 0x08), "mask": (0x10, 0x10), "other": (0x20, 0x20)}


cdef object _acl_xattr(bytes text):
    """A star/libarchive POSIX.1e ACL text (``user::rwx,user:bob:r-x:1001,...``) as the binary
    ``system.posix_acl_*`` value: version 2, then {le16 tag, le16 perm, le32 id} sorted.
    None when an entry cannot be mapped (a name without a numeric id, an unknown tag)."""
    entries = []
    for item in text.decode("utf-8", "replace").replace("\n", ",").split(","):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        fields = item.split(":")
        kind = {"u": "user", "g": "group", "m": "mask", "o": "other"}.get(fields[0], fields[0])
        if kind not in _ACL_TAGS or len(fields) < 2:
            return None
        qualifier, perms = fields[1], fields[2]
        if kind in ("mask", "other") and len(fields) == 2:
            qualifier, perms = "", fields[1]
        perm = sum(bit for ch, bit in zip(perms.ljust(3, "-")[:3], (4, 2, 1)) if ch != "-")
        if qualifier:
            ident = fields[3] if len(fields) > 3 and fields[3].isdigit() else qualifier
            if not ident.isdigit():
                return None  # a user or group name only: no passwd here to map it to an id
            entries.append((_ACL_TAGS[kind][1], perm, int(ident)))
        else:
            entries.append((_ACL_TAGS[kind][0], perm, 0xFFFFFFFF))
    entries.sort(key=lambda e: (e[0], e[2]))
    return (2).to_bytes(4, "little") + b"".join(
        t.to_bytes(2, "little") + p.to_bytes(2, "little") + i.to_bytes(4, "little") for t, p, i in entries)


# ------------------------------------------------------------------------------------------------
# The tree


cdef list _split(bytes path):
    """Path components inside the layer root: leading '/' and '.' dropped, '..' refused."""
    if len(path) > MAX_PATH:
        raise _bad(f"a path of {len(path)} bytes exceeds {MAX_PATH}")
    parts = []
    for part in path.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            raise _bad(f"path {path!r} climbs out of the layer with '..'", path=path)
        if len(part) > EROFS_NAME_MAX:
            raise _bad(f"name {part[:40]!r}... is {len(part)} bytes; the limit is {EROFS_NAME_MAX}")
        if b"\0" in part:
            raise _bad(f"path {path!r} contains a NUL byte")
        parts.append(part)
    return parts


cdef class _Tree:
    cdef Node root
    cdef readonly Py_ssize_t entries, skipped_xattrs

    def __init__(self, Node root):
        self.root = root

    cdef Node parent_of(self, list parts, bytes path):
        cdef Node node = self.root, child
        for part in parts[:-1]:
            child = node.children.get(part)
            if child is None:
                child = Node(S_IFDIR | 0o755)
                node.children[part] = child
            elif not node_is_dir(child):
                raise _bad(f"{path!r} passes through {part!r}, which is not a directory", path=path)
            node = child
        return node

    cdef Node lookup(self, list parts):
        cdef Node node = self.root
        for part in parts:
            if not node_is_dir(node) or part not in node.children:
                return None
            node = node.children[part]
        return node

    cdef place(self, Node parent, bytes name, Node node):
        """Last entry wins; a directory replacing a directory keeps its children."""
        cdef Node old = parent.children.get(name)
        if old is not None and node_is_dir(old) and node_is_dir(node):
            node.children = old.children
        parent.children[name] = node
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise _bad(f"more than {MAX_ENTRIES} entries")

    cdef set_xattrs(self, Node node, dict pax):
        for key, value in pax.items():
            if key.startswith("SCHILY.xattr."):
                name = key[13:].encode("utf-8", "surrogateescape")
            elif key.startswith("LIBARCHIVE.xattr."):
                name = urllib.parse.unquote_to_bytes(key[17:])
                try:
                    value = base64.b64decode(value + b"=" * (-len(value) % 4))
                except ValueError:
                    raise _bad(f"malformed base64 in PAX record {key}") from None
            elif key == "SCHILY.acl.access":
                name, value = b"system.posix_acl_access", _acl_xattr(value)
            elif key == "SCHILY.acl.default":
                name, value = b"system.posix_acl_default", _acl_xattr(value)
            else:
                continue
            if value is None:
                self.skipped_xattrs += 1
                continue
            if len(value) > MAX_XATTR_VALUE:
                raise _bad(f"xattr {name!r} has a {len(value)}-byte value; the limit is {MAX_XATTR_VALUE}")
            if xattr_storable(name):
                node.xattrs[name] = value
            else:
                self.skipped_xattrs += 1


# ------------------------------------------------------------------------------------------------
# Sparse files


cdef list _old_gnu_sparse(bytes hdr, Decoder dec):
    """Old GNU ('S') map: 4 slots in the header, 21 per extension block."""
    cdef unsigned char ext[BLOCK]
    segments = []
    slots = [(hdr[386 + 24 * i:386 + 24 * i + 12], hdr[386 + 24 * i + 12:386 + 24 * i + 24]) for i in range(4)]
    extended = hdr[482]
    while True:
        for off, size in slots:
            if off[0] == 0 and size[0] == 0:
                continue
            segments.append((_number(off, "sparse offset"), _number(size, "sparse size")))
            if len(segments) > MAX_META:
                raise _bad("sparse map too long")
        if not extended:
            return segments
        if not dec.read_block(ext):
            raise _bad("truncated tar stream in a sparse extension header")
        block = bytes(ext[:BLOCK])
        slots = [(block[24 * i:24 * i + 12], block[24 * i + 12:24 * i + 24]) for i in range(21)]
        extended = block[504]


cdef tuple _sparse_map_1_0(Decoder dec):
    """PAX 1.0 map at the start of the data: decimal lines, padded to 512; (segments, bytes used)."""
    text = b""
    used = 0
    numbers = []
    need = None
    while need is None or len(numbers) < need:
        if used >= MAX_META:
            raise _bad("sparse map too long")
        text += dec.read_exact(BLOCK, "a sparse map")
        used += BLOCK
        lines = text.split(b"\n")
        complete = lines[:-1]
        numbers = [int(x) for x in complete if x.strip().isdigit()]
        if numbers and need is None:
            need = 1 + 2 * numbers[0]
    count = numbers[0]
    return [(numbers[1 + 2 * i], numbers[2 + 2 * i]) for i in range(count)], used


cdef tuple _pax_sparse(dict pax):
    """(segments, real size) from PAX GNU.sparse 0.0 / 0.1 records, or None."""
    if "GNU.sparse.map" in pax:
        vals = [int(v) for v in pax["GNU.sparse.map"].split(b",") if v]
        if len(vals) % 2:
            raise _bad("GNU.sparse.map has an odd number of values")
        segments = [(vals[i], vals[i + 1]) for i in range(0, len(vals), 2)]
    elif "GNU.sparse.offset" in pax:
        segments = pax["GNU.sparse.offset+numbytes"]
    else:
        return None
    size = int(pax.get("GNU.sparse.size", pax.get("GNU.sparse.realsize", b"0")))
    return segments, size


cdef _write_sparse(object writer, int fd, Decoder dec, Node node, list segments, uint64_t real_size,
                   bytes path):
    """Stream sparse data into 4 KiB chunks allocated on first touch; untouched chunks are holes."""
    cdef uint64_t nchunks = (real_size + EROFS_BLKSZ - 1) // EROFS_BLKSZ
    if nchunks > 0x80000000ULL:
        raise _bad(f"sparse file {path!r} claims {real_size} bytes")
    chunks = [EROFS_NULL_ADDR] * nchunks
    cdef uint64_t last_end = 0, pos, end, piece
    for off, length in segments:
        if off < last_end or off + length > real_size:
            raise _bad(f"sparse map of {path!r} is out of order or past the file's size")
        pos, end = off, off + length
        while pos < end:
            idx = pos // EROFS_BLKSZ
            if chunks[idx] == EROFS_NULL_ADDR:
                chunks[idx] = writer.alloc(1)
            piece = min(end, (idx + 1) * EROFS_BLKSZ) - pos
            dec.copy_to(fd, chunks[idx] * EROFS_BLKSZ + pos % EROFS_BLKSZ, piece, path.decode("utf-8", "replace"))
            pos += piece
        last_end = end
    node.size, node.chunk_bits, node.chunks = real_size, 0, chunks


# ------------------------------------------------------------------------------------------------


def convert(src, int out_fd):
    """Convert the tar stream read from ``src`` into an EROFS image written to ``out_fd``.

    Returns a dict of facts about the stream. Raises ``InvalidLayerError`` for corrupt, truncated
    or hostile input; the caller owns ``out_fd`` and discards it on error.
    """
    cdef Decoder dec = Decoder(src)
    try:
        with paused():
            return _convert(dec, out_fd)
    finally:
        dec.close()


cdef dict _convert(Decoder dec, int out_fd):
    cdef unsigned char raw[BLOCK]
    cdef unsigned char zero[BLOCK]
    memset(zero, 0, BLOCK)
    writer = ErofsWriter(out_fd)
    cdef _Tree tree = _Tree(writer.root)
    global_pax, pax = {}, {}
    long_name = long_link = None
    while True:
        if not dec.read_block(raw):
            break
        if memcmp(raw, zero, BLOCK) == 0:
            break
        hdr = bytes(raw[:BLOCK])
        if not _checksum_ok(raw, hdr):
            raise _bad(f"tar header checksum mismatch (entry {tree.entries + 1}): the stream is corrupt")
        typeflag = hdr[156:157]
        size = _number(hdr[124:136], "size")
        if typeflag in (b"x", b"g", b"L", b"K"):
            if not 0 <= size <= MAX_META:
                raise _bad(f"a {typeflag.decode()} header of {size} bytes is over the {MAX_META}-byte limit")
            data = dec.read_exact(size, "an extended header")
            dec.copy_to(-1, 0, -size % BLOCK, "padding")
            if typeflag == b"x":
                pax.update(_parse_pax(data))
                _collect_sparse_pairs(pax, data)
            elif typeflag == b"g":
                global_pax.update(_parse_pax(data))
            elif typeflag == b"L":
                long_name = data.split(b"\0", 1)[0]
            else:
                long_link = data.split(b"\0", 1)[0]
            continue
        meta = dict(global_pax)
        meta.update(pax)
        _entry(tree, writer, out_fd, dec, hdr, typeflag, size, meta, long_name, long_link)
        pax, long_name, long_link = {}, None, None
    dec.drain()
    image_size = writer.finish()
    return {
        "kind": KIND_NAMES[dec.kind],
        "diff_id": "sha256:" + dec.sha_plain.hexdigest(),
        "compressed_digest": "sha256:" + dec.sha_compressed.hexdigest(),
        "compressed_size": dec.compressed_size,
        "uncompressed_size": dec.plain_size,
        "erofs_size": image_size,
        "entries": tree.entries,
        "skipped_xattrs": tree.skipped_xattrs,
        "tree": (writer.root, image_size // EROFS_BLKSZ),
    }


cdef _collect_sparse_pairs(dict pax, bytes data):
    """GNU sparse 0.0 repeats offset/numbytes keys, which a dict would collapse: keep them in order."""
    if b"GNU.sparse.offset=" not in data:
        return
    pairs, offset = [], None
    for line in data.split(b"\n"):
        _, _, record = line.partition(b" ")
        key, _, value = record.partition(b"=")
        if key == b"GNU.sparse.offset":
            offset = int(value)
        elif key == b"GNU.sparse.numbytes" and offset is not None:
            pairs.append((offset, int(value)))
            offset = None
    pax["GNU.sparse.offset+numbytes"] = pairs


cdef _entry(_Tree tree, object writer, int fd, Decoder dec, bytes hdr, bytes typeflag, object size,
            dict pax, object long_name, object long_link):
    cdef Node root, parent, node, target, whiteout
    ustar = hdr[257:263] == b"ustar\0"
    if "path" in pax:
        path = pax["path"]
    elif long_name is not None:
        path = long_name
    elif ustar and hdr[345]:
        path = _cstr(hdr[345:500]) + b"/" + _cstr(hdr[0:100])
    else:
        path = _cstr(hdr[0:100])
    if "GNU.sparse.name" in pax:
        path = pax["GNU.sparse.name"]
    link = pax.get("linkpath", long_link if long_link is not None else _cstr(hdr[157:257]))
    if "size" in pax:
        size = int(pax["size"])
    if size < 0:
        raise _bad(f"negative size for {path!r}")
    mode = _number(hdr[100:108], "mode") & 0o7777
    uid = int(pax["uid"]) if "uid" in pax else _number(hdr[108:116], "uid")
    gid = int(pax["gid"]) if "gid" in pax else _number(hdr[116:124], "gid")
    if "mtime" in pax:
        mtime, nsec = _pax_time(pax["mtime"])
    else:
        mtime, nsec = _number(hdr[136:148], "mtime"), 0
    if uid < 0 or gid < 0 or uid > 0xFFFFFFFF or gid > 0xFFFFFFFF:
        raise _bad(f"uid/gid of {path!r} out of range")
    if not -(1 << 63) <= mtime < 1 << 63:
        raise _bad(f"mtime of {path!r} out of range")
    where = path.decode("utf-8", "replace")
    parts = _split(path)
    data_used = 0
    if not parts:  # the layer root itself ("./")
        if typeflag == b"5":
            root = tree.root
            root.mode, root.uid, root.gid, root.mtime, root.mtime_nsec = S_IFDIR | mode, uid, gid, mtime, nsec
            tree.set_xattrs(root, pax)
        dec.copy_to(-1, 0, size + (-size % BLOCK), where)
        return
    parent = tree.parent_of(parts, path)
    name = parts[-1]
    if name.startswith(b".wh."):
        if name == b".wh..wh..opq":
            parent.xattrs[b"trusted.overlay.opaque"] = b"y"
        else:
            hidden = _split(name[4:])
            if not hidden:
                raise _bad(f"whiteout {where!r} names nothing", path=path)
            whiteout = Node(S_IFCHR, uid, gid, mtime, nsec)
            tree.place(parent, hidden[-1], whiteout)
            parent.xattrs[b"trusted.overlay.origin"] = b""
        dec.copy_to(-1, 0, size + (-size % BLOCK), where)
        return
    if typeflag == b"V":  # a volume label, not a file
        dec.copy_to(-1, 0, size + (-size % BLOCK), where)
        return
    if typeflag == b"1":
        target = tree.lookup(_split(link))
        if target is None or node_is_dir(target):
            raise _bad(f"hard link {where!r} points at {link!r}, which is not an earlier file in this layer",
                       path=path)
        tree.place(parent, name, target)
        # Old tars record the target's size on a hard link but store no data; only PAX
        # archives may carry data after one (libarchive reads them the same way).
        if pax:
            dec.copy_to(-1, 0, size + (-size % BLOCK), where)
        return
    if typeflag == b"5" or (typeflag in (b"0", b"\0") and path.endswith(b"/")):
        # pre-POSIX tars marked directories only by the trailing slash
        node = Node(S_IFDIR | mode, uid, gid, mtime, nsec)
    elif typeflag == b"2":
        if len(link) > MAX_SYMLINK or not link:
            raise _bad(f"symlink {where!r} has a target of {len(link)} bytes")
        node = Node(S_IFLNK | 0o777, uid, gid, mtime, nsec)
        node.target = link
    elif typeflag in (b"3", b"4"):
        node = Node((S_IFCHR if typeflag == b"3" else S_IFBLK) | mode, uid, gid, mtime, nsec)
        node.rdev_major = _number(hdr[329:337], "devmajor")
        node.rdev_minor = _number(hdr[337:345], "devminor")
    elif typeflag == b"6":
        node = Node(S_IFIFO | mode, uid, gid, mtime, nsec)
    else:
        node = Node(S_IFREG | mode, uid, gid, mtime, nsec)
        _file_data(tree, writer, fd, dec, hdr, typeflag, size, pax, node, path)
        data_used = size
    tree.set_xattrs(node, pax)
    tree.place(parent, name, node)
    # Only regular files carry data: like libarchive, a size recorded on a directory, link,
    # device or fifo header (old GNU tar wrote some) is ignored and nothing is skipped.
    if data_used:
        dec.copy_to(-1, 0, -size % BLOCK, where)


cdef _file_data(_Tree tree, object writer, int fd, Decoder dec, bytes hdr, bytes typeflag, object size,
                dict pax, Node node, bytes path):
    """Regular-file data (plain or sparse) streamed to its blocks; consumes exactly ``size`` bytes."""
    where = path.decode("utf-8", "replace")
    if typeflag == b"S":
        segments = _old_gnu_sparse(hdr, dec)
        _write_sparse(writer, fd, dec, node, segments, _number(hdr[483:495], "sparse real size"), path)
        dec.copy_to(-1, 0, size - sum(s for _, s in segments), where)
        return
    if pax.get("GNU.sparse.major") == b"1":
        segments, used = _sparse_map_1_0(dec)
        real = int(pax.get("GNU.sparse.realsize", b"0"))
        _write_sparse(writer, fd, dec, node, segments, real, path)
        dec.copy_to(-1, 0, size - used - sum(s for _, s in segments), where)
        return
    sparse = _pax_sparse(pax)
    if sparse is not None:
        segments, real = sparse
        _write_sparse(writer, fd, dec, node, segments, real, path)
        dec.copy_to(-1, 0, size - sum(s for _, s in segments), where)
        return
    nblocks = (size + EROFS_BLKSZ - 1) // EROFS_BLKSZ
    node.size = size
    node.blkaddr = writer.alloc(nblocks) if nblocks else 0
    dec.copy_to(fd, node.blkaddr * EROFS_BLKSZ, size, where)
