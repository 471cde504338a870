/* The monitor's C API as cffi sees it: keep in step with api.h. */
#define MSB_VMM_ABI_VERSION ...
#define MSB_VM_STOPPED ...
#define MSB_VM_HALTED ...
#define MSB_VM_WATCHED ...
#define MSB_VIRTIO_IRQ_BASE ...

int msb_vmm_abi_version(void);

struct msb_guest_mem { uint8_t *host; uint64_t size; };
uint8_t *msb_gpa_check(const struct msb_guest_mem *mem, uint64_t gpa, uint64_t len);

struct msb_uart { uint8_t *out; size_t out_len; size_t out_cap; ...; };
void msb_uart_init(struct msb_uart *u, uint8_t *buf, size_t cap);
void msb_uart_write(struct msb_uart *u, unsigned offset, uint8_t value);
uint8_t msb_uart_read(struct msb_uart *u, unsigned offset);

struct msb_vm { uint64_t io_exits; uint64_t mmio_exits; uint64_t stop_value; uint64_t fixups; ...; };
struct msb_vm *msb_vm_create(uint64_t ram_bytes, int irqchip, char *err, size_t errlen);
int msb_vm_enter_pvh(struct msb_vm *vm, uint32_t entry, uint32_t start_info);
int msb_vm_watch(struct msb_vm *vm, const char *text, size_t len);
void msb_vm_destroy(struct msb_vm *vm);
int msb_vm_load(struct msb_vm *vm, uint64_t gpa, const uint8_t *data, size_t len);
int64_t msb_vm_map_file(struct msb_vm *vm, uint64_t gpa, int fd, uint64_t offset, uint64_t len);
int msb_vm_enter_real_mode(struct msb_vm *vm, uint16_t cs, uint16_t ip);
int msb_vm_enter_long_mode(struct msb_vm *vm, uint64_t rip, uint64_t rsp);
int msb_vm_run(struct msb_vm *vm, uint64_t max_exits, char *err, size_t errlen);
size_t msb_vm_console(struct msb_vm *vm, const uint8_t **bytes);

#define MSB_VQ_MAX_CHAIN ...
struct msb_vq { uint16_t size; uint64_t desc; uint64_t avail; uint64_t used; uint16_t last_avail; uint16_t used_idx; };
struct msb_vq_buf { uint8_t *host; uint32_t len; int device_writes; };
struct msb_vq_chain { uint16_t head; uint32_t count; struct msb_vq_buf bufs[]; ...; };
int msb_vq_pop(struct msb_vq *q, const struct msb_guest_mem *mem, struct msb_vq_chain *chain);
int msb_vq_push(struct msb_vq *q, const struct msb_guest_mem *mem, uint16_t head, uint32_t written);

struct msb_blk { uint32_t n_extents; uint64_t capacity; int read_only; uint64_t requests; uint64_t errors; ...; };
int msb_blk_add_extent(struct msb_blk *b, int fd, uint64_t file_offset, uint64_t length);
int msb_blk_process(struct msb_blk *b, struct msb_vq *q, const struct msb_guest_mem *mem);

#define MSB_VIRTIO_ID_BLOCK ...
#define MSB_VIRTIO_BLK_F_RO ...
#define MSB_VIRTIO_BLK_F_FLUSH ...
#define MSB_VIRTIO_STATUS_NEEDS_RESET ...
typedef int (*msb_notify_fn)(void *device, struct msb_vq *q, const struct msb_guest_mem *mem);
int msb_blk_notify(void *device, struct msb_vq *q, const struct msb_guest_mem *mem);
struct msb_mmio { uint32_t status; uint32_t interrupt_status; uint64_t driver_features; ...; };
void msb_mmio_init(struct msb_mmio *m, uint32_t device_id, uint64_t features, uint32_t num_queues,
                   uint8_t *config, uint32_t config_len, void *device, msb_notify_fn notify,
                   const struct msb_guest_mem *mem);
uint32_t msb_mmio_read(struct msb_mmio *m, uint32_t offset, uint32_t size);
void msb_mmio_write(struct msb_mmio *m, uint32_t offset, uint32_t value, uint32_t size);
#define MSB_VIRTIO_ID_CONSOLE ...
struct msb_console { int fd; struct msb_vq *queues; uint32_t in_len; int host_closed; uint64_t to_guest; uint64_t to_host; ...; };
int msb_console_pull(struct msb_console *c);
int msb_console_notify(void *device, struct msb_vq *q, const struct msb_guest_mem *mem);
int msb_vm_add_blk(struct msb_vm *vm, uint64_t base, int read_only);
int msb_vm_blk_add_extent(struct msb_vm *vm, uint32_t device, int fd, uint64_t file_offset, uint64_t length);
int msb_vm_add_console(struct msb_vm *vm, uint64_t base, int fd);
int msb_vm_console_bytes(struct msb_vm *vm, uint32_t device, uint64_t *to_guest, uint64_t *to_host);
