import { pgliteFactory } from '../store/test-db.ts'
import { deliverySuite } from './delivery-suite.ts'

deliverySuite(pgliteFactory)
