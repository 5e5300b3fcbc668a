/**
 * The ledger table's attribute names, from the file the Rust code also reads
 * (`src/ledger/table.json`): one definition for the code, `--create-table` and this stack.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface LedgerSchema {
  readonly partitionKey: string;
  readonly sortKey: string;
  readonly timeToLive: string;
}

export const LEDGER_SCHEMA_FILE = path.join(__dirname, '..', '..', 'src', 'ledger', 'table.json');

export function ledgerSchema(file: string = LEDGER_SCHEMA_FILE): LedgerSchema {
  const schema = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LedgerSchema>;
  for (const key of ['partitionKey', 'sortKey', 'timeToLive'] as const) {
    if (typeof schema[key] !== 'string' || schema[key] === '') {
      throw new Error(`${file}: ${key} must be a non-empty string`);
    }
  }
  return schema as LedgerSchema;
}
