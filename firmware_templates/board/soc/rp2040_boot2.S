/* tinyq RP2040 second-stage boot loader ("boot2"), written from the RP2040 datasheet
 * (chapter 2.8 "Bootrom", 4.10 "SSI"). The boot ROM copies the first 256 bytes of
 * flash to SRAM (0x20041F00), checks their CRC32 and runs them there, so this code
 * is position independent (literals are PC-relative, no absolute branches).
 *
 * It puts the flash interface (SSI) into execute-in-place mode with the plain
 * serial read command 03h, which every SPI NOR flash understands: slow, but it
 * needs no knowledge of the flash chip (no QSPI enable bit, no dummy cycles).
 * Then it points VTOR at the application's vector table (flash + 0x100), loads
 * the initial stack pointer and jumps to the reset handler. */
    .syntax unified
    .cpu cortex-m0plus
    .thumb
    .section .boot2, "ax"
    .global tq_boot2_entry
    .type tq_boot2_entry, %function
tq_boot2_entry:
    ldr  r3, ssi_base
    movs r0, #0
    str  r0, [r3, #0x08]        /* SSIENR = 0: the SSI must be off to be configured */
    movs r0, #4
    str  r0, [r3, #0x14]        /* BAUDR = 4: SCK = clk_sys / 4 */
    ldr  r0, ctrlr0
    str  r0, [r3, #0x00]        /* CTRLR0: standard SPI, 32-bit frames, EEPROM-read mode */
    movs r0, #0
    str  r0, [r3, #0x04]        /* CTRLR1: NDF = 0, one 32-bit frame per access */
    movs r0, #1
    str  r0, [r3, #0x10]        /* SER: select the flash */
    ldr  r0, spi_ctrlr0
    movs r1, #0xF4
    str  r0, [r3, r1]           /* SPI_CTRLR0: command 03h, 8-bit command, 24-bit address */
    movs r0, #1
    str  r0, [r3, #0x08]        /* SSIENR = 1: XIP on */
    ldr  r0, app_vectors
    ldr  r1, vtor
    str  r0, [r1]               /* VTOR = the application's vector table */
    ldr  r1, [r0, #0]
    ldr  r2, [r0, #4]
    msr  msp, r1
    bx   r2                     /* the reset handler (Thumb bit set in the table) */
    .balign 4
ssi_base:    .word 0x18000000   /* XIP_SSI_BASE */
ctrlr0:      .word 0x001F0300   /* DFS_32 = 31 (32 bits), TMOD = 3 (EEPROM read) */
spi_ctrlr0:  .word 0x03000218   /* XIP_CMD = 0x03, INST_L = 2 (8 bits), ADDR_L = 6 (24 bits) */
app_vectors: .word 0x10000100   /* flash + 256: the vector table follows boot2 */
vtor:        .word 0xE000ED08   /* SCB->VTOR */
