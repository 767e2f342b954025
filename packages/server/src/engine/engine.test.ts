import { pgliteFactory } from '../store/test-db.ts'
import { engineSuite } from './engine-suite.ts'

engineSuite(pgliteFactory)
