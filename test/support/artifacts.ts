import { join } from 'node:path';

/** Screenshots and other things a person may want to look at after a run (git-ignored). */
export const ARTIFACTS = join(process.cwd(), 'test-artifacts');
