import { expect } from 'chai';
import { chooseFile, detectPlatform, parseFilename } from '../app/platform.js';

const UA = {
  windows: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  windowsArm: 'Mozilla/5.0 (Windows NT 10.0; ARM64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  mac: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15',
  linux: 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
  linuxArm: 'Mozilla/5.0 (X11; Linux aarch64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  iphone: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148',
  android: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36',
  pip: 'pip/23.2.1 {"ci":null,"cpu":"x86_64","distro":{"name":"Debian GNU/Linux","version":"12"},"implementation":{"name":"CPython","version":"3.11.7"},"installer":{"name":"pip","version":"23.2.1"},"python":"3.11.7","system":{"name":"Linux","release":"6.1.0"}}',
  pipMac: 'pip/24.0 {"cpu":"arm64","python":"3.12.1","system":{"name":"Darwin","release":"23.1.0"}}',
  pipWindows: 'pip/24.0 {"cpu":"AMD64","python":"3.9.13","system":{"name":"Windows","release":"10"}}',
};

describe('platform detection and the download choice', () => {
  const detected: [keyof typeof UA, string, string, string | undefined][] = [
    ['windows', 'windows', 'x86_64', undefined],
    ['windowsArm', 'windows', 'arm64', undefined],
    ['mac', 'macos', 'unknown', undefined],
    ['linux', 'linux', 'x86_64', undefined],
    ['linuxArm', 'linux', 'arm64', undefined],
    ['iphone', 'unknown', 'unknown', undefined],
    ['android', 'unknown', 'unknown', undefined],
    ['pip', 'linux', 'x86_64', '3.11'],
    ['pipMac', 'macos', 'arm64', '3.12'],
    ['pipWindows', 'windows', 'x86_64', '3.9'],
  ];
  for (const [ua, os, arch, python] of detected) {
    it(`reads ${ua} as ${os}/${arch}${python ? ` with Python ${python}` : ''}`, () => {
      const p = detectPlatform(UA[ua]);
      expect([p.os, p.arch, p.python]).to.deep.equal([os, arch, python]);
    });
  }

  it('splits wheel and sdist file names, and refuses others', () => {
    expect(parseFilename('demo_pkg-1.0-cp311-cp311-win_amd64.whl')).to.include({ kind: 'wheel', name: 'demo_pkg', version: '1.0' });
    expect(parseFilename('demo-1.0-1-py2.py3-none-any.whl')?.python).to.deep.equal(['py2', 'py3']);
    expect(parseFilename('demo_pkg-1.0rc1.tar.gz')).to.include({ kind: 'sdist', name: 'demo_pkg', version: '1.0rc1' });
    expect(parseFilename('demo-pkg-2.0.zip')).to.include({ kind: 'sdist', name: 'demo-pkg', version: '2.0' });
    for (const bad of ['demo.exe', 'demo-1.0.whl', 'demo.tar.gz', 'demo-.tar.gz', 'demo-1.0-py3-none.whl']) {
      expect(parseFilename(bad), bad).to.equal(undefined);
    }
  });

  const release = [
    { filename: 'demo-1.0.tar.gz' },
    { filename: 'demo-1.0-cp311-cp311-win_amd64.whl' },
    { filename: 'demo-1.0-cp311-cp311-win32.whl' },
    { filename: 'demo-1.0-cp311-cp311-macosx_11_0_arm64.whl' },
    { filename: 'demo-1.0-cp311-cp311-macosx_10_9_x86_64.whl' },
    { filename: 'demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl' },
    { filename: 'demo-1.0-cp311-cp311-musllinux_1_1_x86_64.whl' },
  ];
  const choices: [keyof typeof UA, string][] = [
    ['windows', 'demo-1.0-cp311-cp311-win_amd64.whl'],
    ['mac', 'demo-1.0-cp311-cp311-macosx_11_0_arm64.whl'], // and the x86_64 one beside it: Safari hides the CPU.
    ['pipMac', 'demo-1.0.tar.gz'], // Python 3.12: the cp311 wheels do not fit.
    ['linux', 'demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl'],
    ['linuxArm', 'demo-1.0.tar.gz'],
    ['pip', 'demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl'],
    ['iphone', 'demo-1.0.tar.gz'],
  ];
  for (const [ua, expected] of choices) {
    it(`offers ${expected} to ${ua}`, () => expect(chooseFile(release, detectPlatform(UA[ua]))?.file.filename).to.equal(expected));
  }

  it('prefers a universal2 wheel on macOS; for pip a platform wheel over a pure one, for a browser the pure one; a pure one over the sdist', () => {
    const mac = detectPlatform(UA.mac);
    expect(
      chooseFile([{ filename: 'd-1-cp311-cp311-macosx_11_0_arm64.whl' }, { filename: 'd-1-cp311-cp311-macosx_11_0_universal2.whl' }], mac)
        ?.file.filename,
    ).to.equal('d-1-cp311-cp311-macosx_11_0_universal2.whl');
    const pure = [
      { filename: 'd-1-py3-none-any.whl' },
      { filename: 'd-1-cp39-abi3-win_amd64.whl' },
      { filename: 'd-1-cp310-cp310-win_amd64.whl' },
    ];
    expect(chooseFile(pure, detectPlatform(UA.pipWindows))?.file.filename, 'pip says its Python').to.equal('d-1-cp39-abi3-win_amd64.whl');
    expect(chooseFile(pure, detectPlatform(UA.windows))?.file.filename, 'a browser does not').to.equal('d-1-py3-none-any.whl');
    expect(chooseFile([{ filename: 'd-1.tar.gz' }, { filename: 'd-1-py3-none-any.whl' }], mac)?.file.filename).to.equal(
      'd-1-py3-none-any.whl',
    );
    expect(chooseFile([{ filename: 'd-1-cp311-cp311-win_amd64.whl' }], mac)).to.equal(undefined);
  });

  it('prefers glibc over musl, and a pure wheel over either, for a Linux browser', () => {
    const linux = detectPlatform(UA.linux);
    const binaries = [{ filename: 'd-1-cp311-cp311-musllinux_1_1_x86_64.whl' }, { filename: 'd-1-cp311-cp311-manylinux_2_17_x86_64.whl' }];
    expect(chooseFile(binaries, linux)?.file.filename).to.equal('d-1-cp311-cp311-manylinux_2_17_x86_64.whl');
    expect(chooseFile([binaries[0]!, { filename: 'd-1-py3-none-any.whl' }], linux)?.file.filename).to.equal('d-1-py3-none-any.whl');
  });

  it('for a browser, offers a platform wheel that runs on any Python 3 before a pure one, and a version-specific one after it', () => {
    const windows = [
      { filename: 'd-1-py3-none-any.whl' },
      { filename: 'd-1-py3-none-win_amd64.whl' },
      { filename: 'd-1-cp312-cp312-win_amd64.whl' },
    ];
    expect(chooseFile(windows, detectPlatform(UA.windows))?.file.filename).to.equal('d-1-py3-none-win_amd64.whl');
    expect(chooseFile(windows, detectPlatform(UA.windows))?.reason).to.equal('wheel for Windows (x86_64)');
    expect(chooseFile([windows[0]!, windows[2]!], detectPlatform(UA.windows))?.file.filename, 'cp312 needs one Python').to.equal(
      'd-1-py3-none-any.whl',
    );
    expect(chooseFile(windows, detectPlatform(UA.mac))?.file.filename, 'a Windows wheel is no use on a Mac').to.equal(
      'd-1-py3-none-any.whl',
    );
    const linux = [
      { filename: 'd-1-py3-none-any.whl' },
      { filename: 'd-1-py3-none-musllinux_1_2_x86_64.whl' },
      { filename: 'd-1-py3-none-manylinux_2_17_x86_64.whl' },
    ];
    expect(chooseFile(linux, detectPlatform(UA.linux))?.file.filename).to.equal('d-1-py3-none-manylinux_2_17_x86_64.whl');
    expect(chooseFile(linux.slice(0, 2), detectPlatform(UA.linux))?.file.filename).to.equal('d-1-py3-none-musllinux_1_2_x86_64.whl');
    expect(chooseFile([{ filename: 'd-1-py2.py3-none-win_amd64.whl' }, windows[0]!], detectPlatform(UA.windows))?.file.filename).to.equal(
      'd-1-py2.py3-none-win_amd64.whl',
    );
    expect(chooseFile(windows, detectPlatform(UA.pipWindows))?.file.filename, 'pip: either platform wheel beats the pure one').to.not.equal(
      'd-1-py3-none-any.whl',
    );
  });

  it('offers both Mac wheels when the browser hides the CPU, and says why; client hints settle it', () => {
    const both = [{ filename: 'd-1-cp311-cp311-macosx_10_9_x86_64.whl' }, { filename: 'd-1-cp311-cp311-macosx_11_0_arm64.whl' }];
    const safari = chooseFile(both, detectPlatform(UA.mac));
    expect([safari?.file.filename, safari?.alternatives?.map((a) => a.file.filename)]).to.deep.equal([
      'd-1-cp311-cp311-macosx_11_0_arm64.whl',
      ['d-1-cp311-cp311-macosx_10_9_x86_64.whl'],
    ]);
    expect(safari?.note).to.match(/does not say which processor your Mac has/);
    const hinted = detectPlatform(UA.mac, { platform: '"macOS"', arch: '"arm"', bitness: '"64"' });
    expect([hinted.os, hinted.arch]).to.deep.equal(['macos', 'arm64']);
    const chrome = chooseFile(both, hinted);
    expect([chrome?.file.filename, chrome?.alternatives]).to.deep.equal(['d-1-cp311-cp311-macosx_11_0_arm64.whl', undefined]);
    const intel = chooseFile(both, detectPlatform(UA.mac, { platform: '"macOS"', arch: '"x86"', bitness: '"64"' }));
    expect(intel?.file.filename).to.equal('d-1-cp311-cp311-macosx_10_9_x86_64.whl');
    const armWindows = detectPlatform(UA.windows, { platform: '"Windows"', arch: '"arm"', bitness: '"64"' });
    expect(armWindows.arch, 'Windows on ARM says x64 in its User-Agent').to.equal('arm64');
  });
});
