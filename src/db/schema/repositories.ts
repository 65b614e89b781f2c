import { sql } from 'drizzle-orm';
import { pgTable, text, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.js';

export const repositories = pgTable(
  'repositories',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    orgId: uuid('org_id').notNull(),
    name: text('name').notNull(),
    cloneUrl: text('clone_url').notNull(),
    defaultBranch: text('default_branch').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    // Deleting a repository hides it but keeps the jobs (and their logs) that ran against it.
    deletedAt: timestamptz('deleted_at'),
  },
  (t) => [
    // Also serves the listing, which pages by (name, id) among live repositories.
    uniqueIndex('repositories_org_name_live_idx').on(t.orgId, t.name).where(sql`${t.deletedAt} is null`),
  ],
);

export type RepositoryRow = typeof repositories.$inferSelect;
export type NewRepositoryRow = typeof repositories.$inferInsert;
