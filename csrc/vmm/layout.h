/* Guest physical layout and port numbers: the one place these constants live. */
#ifndef MSB_VMM_LAYOUT_H
#define MSB_VMM_LAYOUT_H

#define MSB_UART_BASE 0x3F8u        /* COM1: eight registers at 0x3F8..0x3FF */
#define MSB_UART_PORTS 8u
#define MSB_STOP_PORT 0x501u         /* a guest write here asks the monitor to stop (test guests) */
#define MSB_TSS_ADDR 0xFFFBD000u     /* three pages below 4 GiB, outside RAM (spec vmm.md 1.2) */
#define MSB_MAX_RAM (64ull << 30)

#endif
