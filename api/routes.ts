/**
 * `banyan/routes`: the route table as operators write it: its types, its
 * validation (every problem named, route by route), compilation and the
 * per-request decision, and the one way a route change is made.
 */
export {
  compileTable,
  decide,
  describeChange,
  MODES,
  validateTable,
  type CompiledTable,
  type Decision,
  type Mode,
  type Route,
  type Validation,
} from '../routing/table/index.js';
export { changeRoute, type RouteChange } from '../routing/table/index.js';
