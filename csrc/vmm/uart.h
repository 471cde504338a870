/* A 16550A UART as the guest console: register file only; output goes to a byte sink. */
#ifndef MSB_VMM_UART_H
#define MSB_VMM_UART_H

#include <stddef.h>
#include <stdint.h>

struct msb_uart {
    uint8_t ier, lcr, mcr, scr, dll, dlm;
    uint8_t *out;      /* console bytes the guest wrote (THR) */
    size_t out_len, out_cap;
};

void msb_uart_init(struct msb_uart *u, uint8_t *buf, size_t cap);
/* offset is 0..7 from the base port. */
void msb_uart_write(struct msb_uart *u, unsigned offset, uint8_t value);
uint8_t msb_uart_read(struct msb_uart *u, unsigned offset);

#endif
