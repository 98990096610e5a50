/**
 * A 512-byte x86 boot sector, built here rather than shipped as a binary file,
 * that prints a marker on COM1 and halts. Booting it proves that guest code
 * actually runs under an accelerator, which /dev/kvm existing does not.
 */

export const BOOT_MARKER = 'MOTUS-ACCEL-OK';

const COM1 = 0x3f8;
const LOAD_ADDRESS = 0x7c00;

export function bootSector(marker: string = BOOT_MARKER): Buffer {
  const text = Buffer.from(`${marker}\n`, 'ascii');
  const code = [
    0xfa, //             cli
    0x31, 0xc0, //       xor ax, ax
    0x8e, 0xd8, //       mov ds, ax        ; lodsb reads ds:si, and the BIOS need not leave ds at 0
    0xfc, //             cld
    0xba, COM1 & 0xff, COM1 >> 8, // mov dx, 0x3f8
    0xbe, 0x00, 0x00, // mov si, <text>    ; address patched below
    0xac, //             next: lodsb
    0x84, 0xc0, //       test al, al
    0x74, 0x03, //       jz halt
    0xee, //             out dx, al        ; the UART's transmit register needs no set-up in QEMU
    0xeb, 0xf8, //       jmp next
    0xf4, //             halt: hlt
    0xeb, 0xfd, //       jmp halt          ; hlt wakes on NMI/SMI; stay halted
  ];
  const textAddress = LOAD_ADDRESS + code.length;
  code[10] = textAddress & 0xff;
  code[11] = textAddress >> 8;
  const sector = Buffer.alloc(512, 0);
  Buffer.from(code).copy(sector, 0);
  text.copy(sector, code.length);
  // The terminating NUL is already there from alloc; the signature makes the BIOS boot it.
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}
