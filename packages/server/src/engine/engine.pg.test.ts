// Runs only when TEST_DATABASE_URL is set (scripts/test.ts leaves it out otherwise).
import { postgresFactory } from '../store/test-db.ts'
import { engineSuite } from './engine-suite.ts'

engineSuite(postgresFactory(process.env.TEST_DATABASE_URL as string))
