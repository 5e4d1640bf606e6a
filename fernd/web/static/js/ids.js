// Identifiers made in the browser. They use crypto.getRandomValues, which
// browsers also offer on plain http, unlike crypto.randomUUID.

function hex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function randomBytes(count) {
  const bytes = new Uint8Array(count);
  crypto.getRandomValues(bytes);
  return bytes;
}

// A UUID version 7 (RFC 9562): 48 bits of Unix time in milliseconds, then
// random bits, so ids made later sort later.
export function uuid7() {
  const bytes = randomBytes(16);
  let time = Date.now();
  for (let index = 5; index >= 0; index -= 1) {
    bytes[index] = time % 256;
    time = Math.floor(time / 256);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const text = hex(bytes);
  return [
    text.slice(0, 8),
    text.slice(8, 12),
    text.slice(12, 16),
    text.slice(16, 20),
    text.slice(20),
  ].join("-");
}

// An idempotency key: visible ASCII, well under fernd's 255 characters.
export function idempotencyKey() {
  return "web-" + hex(randomBytes(16));
}

export function correlationId() {
  return Date.now() + "-" + hex(randomBytes(6));
}
