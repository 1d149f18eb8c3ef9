"""Native unit tests of the adapter: python3 -m unittest"""

import json
import unittest

import app
import taskpod_adapter as tp


class AdapterTest(unittest.TestCase):
    def test_runs_the_configured_image(self):
        ctx = tp.Context(namespace="ns", job_name="job-1", config='{"image": "busybox:1.36"}')
        job = app.MyAdapter().adapt(tp.Task(id="t-1", kind="example", tenant="Acme"), ctx)
        json.dumps(job)
        self.assertEqual(job["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.36")
        self.assertEqual(job["metadata"]["labels"]["tenant"], "Acme")

    def test_refuses_unknown_keys(self):
        with self.assertRaises(tp.InvalidConfig):
            app.MyAdapter().validate_config('{"image": "x", "colour": "red"}')


if __name__ == "__main__":
    unittest.main()
