// Every row of the kit, in the order the table shows them.
import type { Row } from './kit.js';
import { basicRows } from './rows-basic.js';

export const rows: Row[] = [...basicRows];
