import { stopServices } from './services.js';

/** Root hooks: whatever shared services the tests started are stopped at the end. */
export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(30_000);
    await stopServices();
  },
};
