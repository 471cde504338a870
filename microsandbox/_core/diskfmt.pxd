# On-disk constants for the container formats and file systems diskprobe recognises.
# One home for every magic number and offset; diskprobe.pyx only arranges reads.

# --- qcow2 (QEMU docs/interop/qcow2.txt) ---
cdef enum:
    QCOW2_MAGIC = 0x514649FB                 # "QFI\xfb", big-endian
    QCOW2_HEADER_V2_LEN = 72
    QCOW2_MIN_CLUSTER_BITS = 9
    QCOW2_MAX_CLUSTER_BITS = 21
    QCOW2_INCOMPAT_EXTL2 = 1 << 4            # extended L2 entries (subclusters)
    QCOW2_INCOMPAT_KNOWN = 0x1F
    QCOW2_COMPRESSION_ZLIB = 0

# Values that do not fit a C int live in a verbatim C block.
cdef extern from *:
    """
    #define MSB_QCOW2_OFFSET_MASK 0x00FFFFFFFFFFFE00ULL
    #define MSB_QCOW2_COMPRESSED (1ULL << 62)
    #define MSB_QCOW2_ZERO 1ULL
    #define MSB_VMDK_GD_AT_END 0xFFFFFFFFFFFFFFFFULL
    #define MSB_EROFS_MAGIC 0xE0F5E1E2U
    """
    const unsigned long long QCOW2_OFFSET_MASK "MSB_QCOW2_OFFSET_MASK"
    const unsigned long long QCOW2_COMPRESSED "MSB_QCOW2_COMPRESSED"
    const unsigned long long QCOW2_ZERO "MSB_QCOW2_ZERO"
    const unsigned long long VMDK_GD_AT_END "MSB_VMDK_GD_AT_END"
    const unsigned int EROFS_MAGIC "MSB_EROFS_MAGIC"

# --- VMDK hosted sparse extent (VMware "Virtual Disk Format 5.0") ---
cdef enum:
    VMDK_SPARSE_MAGIC = 0x564D444B           # "KDMV", little-endian
    VMDK_HEADER_LEN = 512
    VMDK_FLAG_COMPRESSED = 1 << 16
    VMDK_FLAG_MARKERS = 1 << 17
    VMDK_MAX_GTES_PER_GT = 4096
    VMDK_MAX_GRAIN_SECTORS = 2048            # 1 MiB grains; real tools use 128 (64 KiB)
    VMDK_DESCRIPTOR_MAX = 65536

# --- partition tables ---
cdef enum:
    SECTOR = 512
    MBR_SIGNATURE_OFF = 510
    MBR_TABLE_OFF = 446
    MBR_ENTRY_LEN = 16
    MBR_TYPE_GPT_PROTECTIVE = 0xEE
    MBR_TYPE_LINUX = 0x83
    GPT_MAX_ENTRIES = 1024
    GPT_MIN_ENTRY_LEN = 128
    GPT_MAX_ENTRY_LEN = 4096

# --- file systems (offsets from the start of the file system) ---
cdef enum:
    EXT_SB_OFF = 1024
    EXT_MAGIC_OFF = 1024 + 56
    EXT_MAGIC = 0xEF53
    EXT_COMPAT_OFF = 1024 + 92
    EXT_INCOMPAT_OFF = 1024 + 96
    EXT_RO_COMPAT_OFF = 1024 + 100
    EXT3_COMPAT_JOURNAL = 0x4
    EXT3_INCOMPAT_KNOWN = 0x2 | 0x4 | 0x10   # filetype, recover, meta_bg
    EXT2_RO_COMPAT_KNOWN = 0x1 | 0x2 | 0x4   # sparse_super, large_file, btree_dir
    EROFS_SB_OFF = 1024
    BTRFS_MAGIC_OFF = 0x10040
    FAT_FS_TYPE16_OFF = 54
    FAT_FS_TYPE32_OFF = 82

# A probe never needs more than this much of the guest disk at once.
cdef enum:
    PROBE_WINDOW = 0x10048
