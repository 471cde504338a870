# EROFS on-disk constants (shared/spec/erofs.md); the one home for every offset and magic number
# the writer uses. Values above INT_MAX live in the verbatim C block.

cdef extern from *:
    """
    #define MSB_EROFS_SUPER_MAGIC 0xE0F5E1E2U
    #define MSB_EROFS_NULL_ADDR 0xFFFFFFFFU
    #define MSB_EROFS_XATTR_FILTER_SEED 0x25BBE08FU
    """
    const unsigned int EROFS_SUPER_MAGIC "MSB_EROFS_SUPER_MAGIC"
    const unsigned int EROFS_NULL_ADDR "MSB_EROFS_NULL_ADDR"
    const unsigned int EROFS_XATTR_FILTER_SEED "MSB_EROFS_XATTR_FILTER_SEED"

cdef enum:
    EROFS_BLKSZ_BITS = 12
    EROFS_BLKSZ = 4096
    EROFS_SUPER_OFFSET = 1024
    EROFS_SUPER_SIZE = 128
    EROFS_SLOT = 32
    EROFS_INODE_COMPACT = 32
    EROFS_INODE_EXTENDED = 64
    EROFS_DIRENT_SIZE = 12
    EROFS_XATTR_HEADER = 12
    EROFS_NAME_MAX = 255

    # feature bits
    EROFS_COMPAT_SB_CHKSUM = 0x1
    EROFS_COMPAT_MTIME = 0x2
    EROFS_COMPAT_XATTR_FILTER = 0x4
    EROFS_INCOMPAT_CHUNKED_FILE = 0x4

    # i_format datalayouts
    EROFS_FLAT_PLAIN = 0
    EROFS_FLAT_INLINE = 2
    EROFS_CHUNK_BASED = 4
    EROFS_CHUNK_FORMAT_INDEXES = 0x20

    # xattr name-prefix indexes
    EROFS_XATTR_USER = 1
    EROFS_XATTR_POSIX_ACL_ACCESS = 2
    EROFS_XATTR_POSIX_ACL_DEFAULT = 3
    EROFS_XATTR_TRUSTED = 4
    EROFS_XATTR_SECURITY = 6

    # directory entry file types
    EROFS_FT_UNKNOWN = 0
    EROFS_FT_REG_FILE = 1
    EROFS_FT_DIR = 2
    EROFS_FT_CHRDEV = 3
    EROFS_FT_BLKDEV = 4
    EROFS_FT_FIFO = 5
    EROFS_FT_SOCK = 6
    EROFS_FT_SYMLINK = 7
