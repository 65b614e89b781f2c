// Every row of the kit, in the order the table shows them.
import type { Row } from './kit.js';
import { basicRows } from './rows-basic.js';
import { changeRows } from './rows-changes.js';
import { controlRows } from './rows-control.js';
import { logRows } from './rows-logs.js';

export const rows: Row[] = [...basicRows, ...logRows, ...changeRows, ...controlRows];
