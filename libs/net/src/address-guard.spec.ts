import { addressProblem, addressRefusal, hostAllowed, parseCidr } from './address-guard';

describe('address guard', () => {
  it('refuses private, loopback, link-local (metadata) and reserved addresses, IPv4-mapped ones too', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fe80::1', 'fd00::1', '::ffff:10.0.0.1', '::ffff:169.254.169.254', '::ffff:a9fe:a9fe', '::ffff:7f00:1']) {
      expect(addressProblem(a)).toMatch(/private, loopback, link-local or reserved/);
    }
    expect(addressProblem('93.184.216.34')).toBeNull();
    expect(addressProblem('2606:4700::1111')).toBeNull();
  });

  it('allows only the configured ranges among the refused ones', () => {
    const policy = { allowedRanges: ['127.0.0.0/8', 'fd00::/8'] };
    expect(addressRefusal('127.0.0.1', policy)).toBeNull();
    expect(addressRefusal('::ffff:127.0.0.1', policy)).toBeNull();
    expect(addressRefusal('::ffff:7f00:1', policy)).toBeNull();
    expect(addressRefusal('fd12::1', policy)).toBeNull();
    expect(addressRefusal('169.254.169.254', policy)).toMatch(/169\.254\.169\.254 is a private/);
    expect(addressRefusal('10.0.0.1', policy)).toMatch(/private/);
    expect(addressRefusal('93.184.216.34', policy)).toBeNull();
    expect(addressRefusal('169.254.169.254', { allowPrivateAddresses: true })).toBeNull();
    expect(addressRefusal('169.254.169.254', {})).toMatch(/private/);
  });

  it('parses CIDR ranges and refuses anything else', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseCidr('fd00::/8')).toEqual({ address: 'fd00::', prefix: 8, family: 'ipv6' });
    for (const bad of ['10.0.0.0', '10.0.0.0/33', 'fd00::/129', 'example.com/8', '']) expect(parseCidr(bad)).toBeNull();
    expect(() => addressRefusal('10.0.0.1', { allowedRanges: ['nope'] })).toThrow(/not a CIDR range/);
  });

  it('matches host allowlists, *.domain for subdomains', () => {
    expect(hostAllowed('a.example.com', ['*.example.com'])).toBe(true);
    expect(hostAllowed('example.org', ['*.example.com'])).toBe(false);
    expect(hostAllowed('anything', undefined)).toBe(true);
  });
});
