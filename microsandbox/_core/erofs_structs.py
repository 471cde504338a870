"""EROFS record layouts as ``struct`` formats, shared by the writer and the reader (offsets and
constants are in ``erofs_fs.pxd``; shared/spec/erofs.md has the field tables)."""
import struct

COMPACT_INODE = struct.Struct("<HHHHIIIIHHI")          # 32 bytes
EXTENDED_INODE = struct.Struct("<HHHHQIIIIqII16x")     # 64 bytes
DIRENT = struct.Struct("<QHBx")                        # 12 bytes
XATTR_ENTRY = struct.Struct("<BBH")                    # then name suffix and value, padded to 4
# magic, checksum, compat, blkszbits, extslots, root_nid, inos, build_time, build_time_nsec,
# blocks, meta_blkaddr, xattr_blkaddr, uuid, volume_name, incompat, u1, extra_devices, devt_slotoff
SUPERBLOCK = struct.Struct("<IIIBBHQqIIII16s16sIHHH")

# xattr name-prefix indexes (spec 6.3): 1 user., 2/3 the two ACL names whole, 4 trusted., 6 security.
XATTR_PREFIXES = {1: b"user.", 2: b"system.posix_acl_access", 3: b"system.posix_acl_default",
                  4: b"trusted.", 6: b"security."}
