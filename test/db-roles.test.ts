import { expect } from 'chai';
import { decideRoles, suggestsNewPrimary, type NodeReading } from '../lib/db-roles.js';

const primary = (timeline: number, lsn = 100n): NodeReading => ({ reachable: true, inRecovery: false, timeline, lsn });
const standby = (lsn = 90n): NodeReading => ({ reachable: true, inRecovery: true, lsn });
const starting: NodeReading = { reachable: true, inRecovery: true, lsn: undefined };
const down: NodeReading = { reachable: false, error: 'connect ECONNREFUSED' };

describe('roles asked of the servers (decideRoles)', () => {
  it('the one writable server is the primary, whatever its place in the list; standbys that replay are replicas', () => {
    expect(decideRoles([standby(), primary(1), standby()], undefined)).to.deep.equal({ primary: 1, replicas: [0, 2], fenced: [] });
  });

  it('an unreachable server has no role, and a standby with no replay position serves no reads', () => {
    expect(decideRoles([down, primary(1), starting], 0)).to.deep.equal({ primary: 1, replicas: [], fenced: [] });
  });

  it('with the primary down and nothing promoted yet, there is no primary (writes wait) and reads go on from standbys', () => {
    expect(decideRoles([down, standby()], 0)).to.deep.equal({ primary: undefined, replicas: [1], fenced: [] });
  });

  it('after a promotion the newest timeline wins; the old primary, back on its old timeline, serves nothing', () => {
    expect(decideRoles([primary(1, 500n), primary(2, 300n)], 0)).to.deep.equal({ primary: 1, replicas: [], fenced: [0] });
  });

  it('two writable servers on the same timeline: the current primary keeps the role, else nobody gets it', () => {
    expect(decideRoles([primary(3), primary(3)], 1)).to.deep.equal({ primary: 1, replicas: [], fenced: [0] });
    expect(decideRoles([primary(3), primary(3)], undefined)).to.deep.equal({ primary: undefined, replicas: [], fenced: [0, 1] });
  });

  it('a demoted server (now a standby) loses the primary role at the next reading', () => {
    expect(decideRoles([standby(), primary(2)], 0)).to.deep.equal({ primary: 1, replicas: [0], fenced: [] });
  });

  it('a failed write asks again when the server was unreachable or refused it as read-only, not for a query error', () => {
    expect(suggestsNewPrimary({ code: 'ECONNREFUSED' })).to.equal(true);
    expect(suggestsNewPrimary({ code: '25006', message: 'cannot execute INSERT in a read-only transaction' })).to.equal(true);
    expect(suggestsNewPrimary({ code: '57P01' })).to.equal(true);
    expect(suggestsNewPrimary({ code: '23505' })).to.equal(false);
  });
});
