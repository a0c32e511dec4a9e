import { packagerConfigFromEnv } from './packager-config';

describe('packagerConfigFromEnv', () => {
  it('defaults refuse file:// and private addresses and allow any host', () => {
    const c = packagerConfigFromEnv({});
    expect(c.natsUrl).toBe('nats://127.0.0.1:4222');
    expect(c.options.git).toMatchObject({ allowFileUrls: false, allowedHosts: undefined });
    expect(c.options.data).toMatchObject({ allowPrivateAddresses: false, allowedHosts: undefined });
  });

  it('reads host allowlists, switches and limits', () => {
    const c = packagerConfigFromEnv({
      JOBLINE_PACKAGER_GIT_HOSTS: 'github.com, *.corp.example',
      JOBLINE_PACKAGER_DATA_HOSTS: 'data.example.com',
      JOBLINE_PACKAGER_ALLOW_FILE_URLS: 'true',
      JOBLINE_PACKAGER_MAX_DATA_BYTES: '1048576',
      JOBLINE_PACKAGER_BASE_IMAGE: 'alpine:3.20',
    });
    expect(c.options.git).toMatchObject({ allowFileUrls: true, allowedHosts: ['github.com', '*.corp.example'] });
    expect(c.options.data).toMatchObject({ allowedHosts: ['data.example.com'], maxBytes: 1048576 });
    expect(c.options.baseImage).toBe('alpine:3.20');
  });

  it('refuses bad values, naming each', () => {
    expect(() => packagerConfigFromEnv({ JOBLINE_PACKAGER_ALLOW_FILE_URLS: 'yes', JOBLINE_PACKAGER_GIT_HOSTS: 'a b' })).toThrow(
      /JOBLINE_PACKAGER_GIT_HOSTS.*JOBLINE_PACKAGER_ALLOW_FILE_URLS|JOBLINE_PACKAGER_ALLOW_FILE_URLS.*JOBLINE_PACKAGER_GIT_HOSTS/,
    );
  });
});
