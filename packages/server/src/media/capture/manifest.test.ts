import { pgliteFactory } from '../../store/test-db.ts'
import { manifestSuite } from './manifest-suite.ts'

manifestSuite(pgliteFactory)
