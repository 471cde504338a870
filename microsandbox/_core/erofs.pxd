# The writer's inode type, declared here so the converter, the reader and the composer reach its
# fields directly instead of through Python attribute lookups.

cdef class Node:
    cdef public unsigned int mode
    cdef public object uid, gid, size, mtime
    cdef public unsigned int mtime_nsec, rdev_major, rdev_minor
    cdef public bytes target
    cdef public dict xattrs, children
    cdef public object blkaddr
    cdef public int chunk_bits
    cdef public object chunks
    # filled in by ErofsWriter.finish() (and by the reader, for layout and i_u)
    cdef public unsigned long long nid
    cdef public unsigned int nlink, ino, i_u
    cdef public int layout
    cdef public bint extended
    cdef public bytes ibody, inline
    cdef public list dir_blocks
    cdef public Py_ssize_t footprint


cdef inline bint node_is_dir(Node node) noexcept:
    return (node.mode & 0o170000) == 0o040000
