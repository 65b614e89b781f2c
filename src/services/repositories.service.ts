// The organisation's git repositories: what jobs run against.
import type { Database, Executor } from '../db/client.js';
import * as jobsRepo from '../db/jobs.repository.js';
import * as reposRepo from '../db/repositories.repository.js';
import type { RepositoryRow } from '../db/schema/index.js';
import { AlreadyExistsError, ConflictError, NotFoundError } from '../errors.js';
import { requireOrgRole, type Caller } from './access.js';
import { decodeNameCursor, encodeNameCursor } from './cursor.js';
import { fingerprint, revive, type IdempotencyKeys, type RememberAnswer, type Submitted } from './idempotency.js';

export type Repository = Omit<RepositoryRow, 'deletedAt' | 'createdBy'>;

export interface CreateRepositoryInput {
  name: string;
  cloneUrl: string;
  defaultBranch?: string | undefined;
}

function toRepository(row: RepositoryRow): Repository {
  const { deletedAt: _deleted, createdBy: _by, ...repo } = row;
  return repo;
}

export class RepositoriesService {
  constructor(
    private readonly db: Database,
    private readonly idempotency: IdempotencyKeys,
  ) {}

  /** Registers a repository; with an `idempotencyKey`, once per key (see IdempotencyKeys). */
  async create(caller: Caller, orgId: string, input: CreateRepositoryInput, idempotencyKey?: string): Promise<Submitted<Repository>> {
    requireOrgRole(caller, orgId, 'Admin');
    const keyed = idempotencyKey === undefined ? undefined : { scope: { orgId, operation: 'createRepository' as const, key: idempotencyKey }, fingerprint: fingerprint(input) };
    const decode = (json: Record<string, unknown>) => revive<Repository>(json, ['createdAt']);
    const register = async (tx: Executor, remember: RememberAnswer<Repository>) => {
        const row = await reposRepo.insertRepository(tx, {
          orgId,
          name: input.name,
          cloneUrl: input.cloneUrl,
          defaultBranch: input.defaultBranch ?? 'main',
          createdBy: caller.userId,
        });
        if (!row) {
          throw new AlreadyExistsError(`A repository named "${input.name}" already exists in this organisation`, [{ pointer: '/name', message: 'is already taken' }]);
        }
        const repository = toRepository(row);
        await remember(tx, repository);
        return repository;
    };
    // The key's answer is stored with the repository, so a keyed request is a transaction of two inserts.
    return this.idempotency.once<Repository>(keyed, decode, (remember) =>
      keyed ? this.db.transaction((tx) => register(tx, remember)) : register(this.db, remember),
    );
  }

  async list(caller: Caller, orgId: string, input: { limit: number; cursor?: string | undefined }): Promise<{ items: Repository[]; nextCursor: string | null }> {
    requireOrgRole(caller, orgId, 'Member');
    // Ordered by name, as the contract promises, so the cursor carries the last name shown.
    const after = input.cursor ? decodeNameCursor(input.cursor) : undefined;
    const rows = await reposRepo.listRepositories(this.db, orgId, after, input.limit + 1);
    const page = rows.slice(0, input.limit);
    const last = page.at(-1);
    return { items: page.map(toRepository), nextCursor: rows.length > input.limit && last ? encodeNameCursor(last) : null };
  }

  async get(caller: Caller, orgId: string, repoId: string): Promise<Repository> {
    requireOrgRole(caller, orgId, 'Member');
    const row = await reposRepo.findRepository(this.db, orgId, repoId);
    if (!row) throw new NotFoundError(`Repository ${repoId}`);
    return toRepository(row);
  }

  /**
   * Hides the repository; its finished jobs and their logs stay readable. The row lock makes the
   * count and the delete one step against submissions, which hold the same row while they add a job.
   */
  async delete(caller: Caller, orgId: string, repoId: string): Promise<void> {
    requireOrgRole(caller, orgId, 'Admin');
    await this.db.transaction(async (tx) => {
      const row = await reposRepo.lockRepository(tx, orgId, repoId, 'update');
      if (!row) throw new NotFoundError(`Repository ${repoId}`);
      const unfinished = await jobsRepo.countUnfinishedForRepo(tx, repoId);
      if (unfinished > 0) throw new ConflictError(`The repository has ${unfinished} unfinished jobs; cancel them or let them finish first`);
      await reposRepo.markRepositoryDeleted(tx, repoId);
    });
  }
}
