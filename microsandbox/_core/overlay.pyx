"""The merged view of an image's layers, as the tree fsmeta is written from.

OCI overlay rules (image-spec layer.md): a whiteout (a char 0:0 node) deletes the name below it,
an opaque directory hides everything below it, and an upper entry replaces a lower one, metadata
included. The result is a fresh writer tree: directories copied, overlay xattrs dropped, and every
regular file made chunk-based, its chunks pointing at its blocks inside the layer it came from,
counted from the end of fsmeta (``ErofsWriter(chunks_after_image=True)`` adds fsmeta's size).
Hard links within one layer stay one inode.
"""
from microsandbox._core.erofs cimport Node, node_is_dir
from microsandbox._core.erofs_fs cimport EROFS_BLKSZ, EROFS_NULL_ADDR

cdef tuple _OVERLAY_XATTRS = (b"trusted.overlay.", b"user.overlay.")


def merge(list trees):
    """(root ``Node`` of the merged tree, number of entries in it) for ``trees``, a list of
    (root ``Node``, size in blocks) per layer, bottom to top.

    Both passes walk with explicit stacks, not recursion: a layer may nest directories as deep
    as its paths allow, and a hostile image deeper still."""
    cdef _Dir merged = _Dir(trees[0][0])
    cdef list bases = []
    cdef object at = 0
    for index, (root, blocks) in enumerate(trees):
        _overlay(merged, root, index)
        bases.append(at)
        at += blocks
    return _to_nodes(merged, bases)


cdef class _Dir:
    """A directory of the merged tree: its metadata's source and its children by name, each a
    ``_Dir`` or a (layer index, source ``Node``) pair."""
    cdef Node source
    cdef dict children

    def __cinit__(self, Node source):
        self.source = source
        self.children = {}


cdef _overlay(_Dir top, Node upper_top, int layer):
    """Apply one layer's tree on top of what lies below it."""
    cdef _Dir merged, below
    cdef Node upper, node
    cdef list stack = [(top, upper_top)]
    while stack:
        merged, upper = stack.pop()
        merged.source = upper
        if upper.xattrs and b"y" in (upper.xattrs.get(b"trusted.overlay.opaque"),
                                     upper.xattrs.get(b"user.overlay.opaque")):
            merged.children.clear()
        for name, node in upper.children.items():
            if _is_whiteout(node):
                merged.children.pop(name, None)
            elif node_is_dir(node):
                existing = merged.children.get(name)
                if isinstance(existing, _Dir):
                    below = existing
                else:                      # new, or replacing a non-directory
                    below = _Dir(node)
                    merged.children[name] = below
                stack.append((below, node))
            else:
                merged.children[name] = (layer, node)


cdef inline bint _is_whiteout(Node node) noexcept:
    return (node.mode & 0o170000) == 0o020000 and node.rdev_major == 0 and node.rdev_minor == 0


cdef tuple _to_nodes(_Dir top, list bases):
    """The writer's tree for the merged view, and how many names it holds (the root included)."""
    cdef Node root = _copy_meta(top.source), node, src
    cdef _Dir merged
    cdef dict shared = {}    # (layer, source Node) -> leaf: hard links inside a layer stay one inode
    cdef list stack = [(top, root)]
    cdef Py_ssize_t entries = 1
    cdef int layer
    while stack:
        merged, node = stack.pop()
        for name, child in merged.children.items():
            entries += 1
            if isinstance(child, _Dir):
                sub = node.children[name] = _copy_meta((<_Dir>child).source)
                stack.append((child, sub))
                continue
            layer, src = child
            leaf = shared.get(child)
            if leaf is None:
                leaf = shared[child] = _leaf(src, bases[layer])
            node.children[name] = leaf
    return root, entries
cdef Node _copy_meta(Node src):
    cdef Node node = Node(src.mode, src.uid, src.gid, src.mtime, src.mtime_nsec)
    if src.xattrs:
        node.xattrs = {k: v for k, v in src.xattrs.items() if not k.startswith(_OVERLAY_XATTRS)}
    return node


cdef Node _leaf(Node src, object base):
    cdef Node node = _copy_meta(src)
    node.rdev_major, node.rdev_minor, node.target = src.rdev_major, src.rdev_minor, src.target
    if (src.mode & 0o170000) == 0o100000:
        node.size = src.size
        if src.chunks is not None:
            node.chunk_bits = src.chunk_bits
            node.chunks = [c if c == EROFS_NULL_ADDR else c + base for c in src.chunks]
        elif src.size:
            blocks = (src.size + EROFS_BLKSZ - 1) // EROFS_BLKSZ
            node.chunk_bits = max(0, (blocks - 1).bit_length())   # one chunk covers the whole file
            node.chunks = [src.blkaddr + base]
    return node
