"""The simulation layer (MuJoCo + numpy; no torch, no rclpy).

Robot configs by role and their files (:mod:`trot.sim.robot`), the one world builder
(:mod:`trot.sim.world`: robot + ground, the ground from :mod:`trot.sim.terrain`), actuator gains by
joint name (:func:`trot.sim.world.joint_gains`), domain randomization (:mod:`trot.sim.randomization`),
rendering (:mod:`trot.sim.render`) and the offscreen GL choice (:mod:`trot.sim.gl`). The training
env, the ROS robot node, replay and artifact evaluation all build their world here.
"""
