import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * The address guard of every outbound request Jobline makes for a user (data files, webhooks):
 * private, loopback, link-local (cloud metadata: 169.254.169.254), multicast and reserved
 * addresses are refused unless the configuration allows them. Checked on the address actually
 * connected to (the resolver's answers), so a public name that resolves to a private address
 * (DNS rebinding) is refused as well.
 */

const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['2001:db8::', 32]] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

/** The IPv4 address of an IPv4-mapped IPv6 one (`::ffff:10.0.0.1` or, as URLs write it, `::ffff:a00:1`); the address itself otherwise. */
function unmapped(address: string): string {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (dotted) return dotted[1];
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (hex) {
    const hi = parseInt(hex[1], 16);
    const lo = parseInt(hex[2], 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return address;
}

/** Why an address may not be connected to (private, loopback, link-local...), or null when it is public. */
export function addressProblem(address: string): string | null {
  const v = isIP(address);
  if (v === 0) return `${address} is not an IP address`;
  const plain = unmapped(address);
  if (plain !== address) return addressProblem(plain);
  return blocked.check(address, v === 4 ? 'ipv4' : 'ipv6') ? `${address} is a private, loopback, link-local or reserved address` : null;
}

/** What may be connected to besides public addresses. */
export interface AddressPolicy {
  /** Every private, loopback, link-local or reserved address is allowed (the packager's switch). */
  allowPrivateAddresses?: boolean;
  /** Only these ranges (CIDR, e.g. `127.0.0.0/8`, `fd00::/8`) are allowed among the refused ones. */
  allowedRanges?: readonly string[];
}

/** A CIDR range `address/prefix` (IPv4 or IPv6), or null when the text is not one. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m) return null;
  const v = isIP(m[1]);
  const prefix = Number(m[2]);
  if (v === 0 || prefix > (v === 4 ? 32 : 128)) return null;
  return { address: m[1], prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

function rangesOf(policy: AddressPolicy): BlockList | null {
  if (!policy.allowedRanges?.length) return null;
  const list = new BlockList();
  for (const r of policy.allowedRanges) {
    const c = parseCidr(r);
    if (!c) throw new Error(`${JSON.stringify(r)} is not a CIDR range such as 127.0.0.0/8`);
    list.addSubnet(c.address, c.prefix, c.family);
  }
  return list;
}

/** Why the policy refuses an address, or null when it may be connected to. */
export function addressRefusal(address: string, policy: AddressPolicy = {}, ranges: BlockList | null = rangesOf(policy)): string | null {
  if (policy.allowPrivateAddresses) return null;
  const problem = addressProblem(address);
  if (!problem || !ranges) return problem;
  const plain = unmapped(address);
  return ranges.check(plain, isIP(plain) === 4 ? 'ipv4' : 'ipv6') ? null : problem;
}

/** True when host matches the allowlist (undefined: everything); '*.example.com' matches subdomains. */
export function hostAllowed(host: string, allowed: readonly string[] | undefined): boolean {
  if (!allowed) return true;
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return allowed.some((a) => {
    const p = a.toLowerCase();
    return p.startsWith('*.') ? h.endsWith(p.slice(1)) : h === p;
  });
}

/** The host of a URL as an address when it is an IP literal (brackets removed), else null. */
export function literalAddress(u: URL): string | null {
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return isIP(host) ? host : null;
}

/**
 * A `lookup` for node:http(s) and net: resolves, then refuses any answer the policy refuses
 * (with `refused(message)`), so the address checked is the address connected to. IP literals
 * never reach a lookup: check them with addressRefusal before connecting.
 */
export function guardedLookup(policy: AddressPolicy, refused: (message: string) => Error): LookupFunction {
  const ranges = rangesOf(policy);
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      for (const a of addresses) {
        const p = addressRefusal(a.address, policy, ranges);
        if (p) return callback(refused(`${hostname} resolves to ${p}`), '', 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };
}
