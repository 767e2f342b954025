// Runs only when TEST_DATABASE_URL is set (scripts/test.ts leaves it out otherwise).
import { postgresFactory } from '../../store/test-db.ts'
import { manifestSuite } from './manifest-suite.ts'

manifestSuite(postgresFactory(process.env.TEST_DATABASE_URL as string))
