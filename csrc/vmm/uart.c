/* 16550A register behaviour as Linux's 8250 driver probes and uses it (spec vmm.md 4.1):
 * DLAB (LCR bit 7) switches offsets 0/1 to the divisor latch; the transmitter is always empty,
 * so LSR reports THRE|TEMT and writes to THR land in the output sink at once. No receive path
 * yet: RBR reads 0 and LSR never reports data ready. */
#include "vmm/uart.h"

#include <string.h>

enum { THR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };
enum { LCR_DLAB = 0x80, LSR_THRE = 0x20, LSR_TEMT = 0x40, IIR_NONE = 0x01, IIR_FIFO = 0xC0,
       MCR_LOOP = 0x10, MSR_CTS_DSR_DCD = 0xB0 };

void msb_uart_init(struct msb_uart *u, uint8_t *buf, size_t cap) {
    memset(u, 0, sizeof *u);
    u->out = buf;
    u->out_cap = cap;
}

void msb_uart_write(struct msb_uart *u, unsigned offset, uint8_t value) {
    int dlab = u->lcr & LCR_DLAB;
    switch (offset & 7) {
    case THR:
        if (dlab) u->dll = value;
        else if (u->out_len < u->out_cap) u->out[u->out_len++] = value;
        break;
    case IER:
        if (dlab) u->dlm = value;
        else u->ier = value & 0x0F;
        break;
    case LCR: u->lcr = value; break;
    case MCR: u->mcr = value & 0x1F; break;
    case SCR: u->scr = value; break;
    default: break; /* FCR (at IIR), LSR and MSR writes have no effect here */
    }
}

uint8_t msb_uart_read(struct msb_uart *u, unsigned offset) {
    int dlab = u->lcr & LCR_DLAB;
    switch (offset & 7) {
    case THR: return dlab ? u->dll : 0;
    case IER: return dlab ? u->dlm : u->ier;
    case IIR: return IIR_NONE | IIR_FIFO;
    case LCR: return u->lcr;
    case MCR: return u->mcr;
    case LSR: return LSR_THRE | LSR_TEMT;
    case MSR: return (u->mcr & MCR_LOOP) ? (uint8_t)((u->mcr & 0x0F) << 4) : MSR_CTS_DSR_DCD;
    default: return u->scr;
    }
}
