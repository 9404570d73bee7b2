/**
 * Defence in depth for "never print a password": every password pgconvoy learns is
 * registered here, and everything the command line prints goes through `redact()`.
 */
const secrets = new Set<string>();

export function registerSecret(secret: string | undefined): void {
  // Very short strings would blank out ordinary words; libpq passwords that short are rare.
  if (secret && secret.length >= 3) secrets.add(secret);
}

export function redact(text: string): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join('********');
  if (secrets.size > 0) {
    for (const secret of secrets) out = out.split(encodeURIComponent(secret)).join('********');
  }
  // URIs with inline passwords that we never parsed (e.g. echoed back by a server).
  return out.replace(/(postgres(?:ql)?:\/\/[^:/@\s]*:)[^@\s]*@/g, '$1********@');
}
